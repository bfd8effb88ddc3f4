"""The collector pause around a load: off inside, restored after, nested pauses safe, and the
objects built meanwhile end in the oldest generation rather than the youngest."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

import kbtool
from kbtool.core.gc_pause import collection_paused

KB_SMALL = Path(__file__).resolve().parent / "fixtures" / "kb_small"


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    gc.enable()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause does not switch it back on
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()


def test_the_collector_is_restored_when_the_block_raises() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_what_was_built_is_moved_to_the_oldest_generation() -> None:
    gc.enable()
    gc.collect()
    with collection_paused():
        built = [[i] for i in range(20_000)]
        assert gc.get_count()[0] > 10_000  # young, and not collected while paused
    assert gc.get_count()[0] < 1_000  # nothing left for the youngest generation to scan
    ids = {id(x) for x in built}
    oldest = {id(o) for o in gc.get_objects(generation=2) if id(o) in ids}
    assert len(oldest) == len(built)


def test_a_load_leaves_the_collector_as_it_found_it() -> None:
    gc.enable()
    kbtool.load(KB_SMALL, cache=False)
    assert gc.isenabled()
    gc.disable()
    kbtool.load(KB_SMALL, cache=False)
    assert not gc.isenabled()
