"""The validated load cache: a warm load gives exactly what a cold load gives, a changed file is
checked again (and only it), and a missing, corrupt, stale or unwritable cache never changes
the result or crashes; a file with a problem is never served from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import kbtool
from kbtool.core import load_cache, paper_files
from kbtool.core.load_cache import CACHE_FILE, content_digest, read_cache
from kbtool.core.loader import Records, load_records

REPO = Path(__file__).resolve().parent.parent
KB_SMALL = REPO / "tests" / "fixtures" / "kb_small"
MINILLM = "papers/gu2023minillm.yaml"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """A writable copy of the small fixture KB, without any cache."""
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root, ignore=shutil.ignore_patterns(".cache"))
    return root


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def same(a: Records, b: Records) -> None:
    """Both loads hold the same records and problems (fields set by each file included)."""
    assert a.papers == b.papers
    # the fields each file set, nested models included
    assert [p.model_dump(exclude_unset=True) for p in a.papers] == [
        p.model_dump(exclude_unset=True) for p in b.papers
    ]
    assert (a.nodes, a.methods) == (b.nodes, b.methods)
    assert a.problems == b.problems


def checked_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which paper files the loader parses and validates (cache misses)."""
    seen: list[str] = []
    original = paper_files.check_paper

    def spy(job: tuple[Path, str]) -> paper_files.PaperOutcome:
        seen.append(job[1])
        return original(job)

    monkeypatch.setattr(paper_files, "check_paper", spy)
    return seen


def test_warm_load_equals_cold_load_and_parses_nothing(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = load_records(kb)
    assert (kb / CACHE_FILE).is_file()
    assert set(read_cache(kb).entries) == {f"papers/{p.id}.yaml" for p in cold.papers}
    seen = checked_files(monkeypatch)
    warm = load_records(kb)
    assert seen == []
    same(warm, cold)
    same(warm, load_records(kb, cache=False))


def test_cache_false_neither_reads_nor_writes_a_cache(kb: Path) -> None:
    load_records(kb, cache=False)
    kbtool.load(kb, cache=False)
    assert not (kb / ".cache").exists()
    kbtool.load(kb)
    assert (kb / CACHE_FILE).is_file()


def test_an_edited_file_is_checked_again_and_only_it(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_records(kb)
    edit(kb, MINILLM, "year: 2023\n", "year: 2022\n")
    seen = checked_files(monkeypatch)
    records = load_records(kb)
    assert seen == [MINILLM]
    assert next(p for p in records.papers if p.id == "gu2023minillm").year == 2022
    assert read_cache(kb).entries[MINILLM].digest == content_digest((kb / MINILLM).read_bytes())
    same(records, load_records(kb, cache=False))


def test_added_and_deleted_files_are_seen(kb: Path) -> None:
    load_records(kb)
    shutil.copy(kb / MINILLM, kb / "papers" / "copy2023minillm.yaml")
    edit(kb, "papers/copy2023minillm.yaml", "id: gu2023minillm", "id: copy2023minillm")
    edit(kb, "papers/copy2023minillm.yaml", "arxiv_id: '2306.08543'", "arxiv_id: '2306.99999'")
    with_copy = load_records(kb)
    assert "copy2023minillm" in {p.id for p in with_copy.papers}
    same(with_copy, load_records(kb, cache=False))
    (kb / "papers" / "copy2023minillm.yaml").unlink()
    without = load_records(kb)
    assert "copy2023minillm" not in {p.id for p in without.papers}
    assert "papers/copy2023minillm.yaml" not in read_cache(kb).entries
    same(without, load_records(kb, cache=False))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("year: 2023\n", 'year: "abc"\n'),  # a schema error
        ("year: 2023\n", "year: [2023\n"),  # a YAML syntax error
        ("id: gu2023minillm", "id: other2023minillm"),  # id does not match the file name
    ],
)
def test_a_file_with_a_problem_is_reported_on_every_load(kb: Path, old: str, new: str) -> None:
    """A cached valid file that becomes invalid, and stays so, is reported each time."""
    load_records(kb)
    edit(kb, MINILLM, old, new)
    cold = load_records(kb, cache=False)
    assert any(p.file == MINILLM for p in cold.problems)
    for _ in range(2):
        same(load_records(kb), cold)
    if "id:" not in old:  # only error-free files are cached
        assert MINILLM not in read_cache(kb).entries


def _corrupt_variants(data: bytes) -> list[bytes]:
    header, body = data.split(b"\n", 1)
    assert body.count(b"MiniLLM") >= 1
    flipped = body.replace(b"MiniLLM", b"MiniLLN", 1)  # one bit, still valid JSON and schema
    return [
        b"",
        b"\x00\xff garbage",
        data[: len(data) // 2],  # truncated
        header + b"\n" + flipped,  # a flipped bit in a title
        b'{"format": 3}\n' + body,
        b"[1, 2]\n" + body,
        header,  # no body at all
    ]


def test_a_corrupt_cache_is_ignored_and_replaced(kb: Path) -> None:
    expected = load_records(kb, cache=False)
    load_records(kb)
    good = (kb / CACHE_FILE).read_bytes()
    for variant in _corrupt_variants(good):
        (kb / CACHE_FILE).write_bytes(variant)
        same(load_records(kb), expected)
        assert read_cache(kb).entries  # rewritten, readable again


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"year":2023', b'"year":2023,"colour":"red"'),  # a field the model does not have
        (b'"title":', b'"headline":'),  # a required field missing
        (b'"source":{', b'"source":[{'),  # wrong shape
        (b'"year":2023', b'"year":1066'),  # a value the schema refuses
    ],
)
def test_a_cache_entry_that_does_not_fit_the_model_means_a_cold_load(
    kb: Path, old: bytes, new: bytes
) -> None:
    """Even with its checksums recomputed, a cache entry that does not fit the model is not
    served: the load starts over from the files."""
    expected = load_records(kb, cache=False)
    load_records(kb)
    header = json.loads((kb / CACHE_FILE).read_bytes().split(b"\n", 1)[0])
    entries = read_cache(kb).entries
    doctored = {rel: e.body.replace(old, new, 1) for rel, e in entries.items()}
    assert doctored != {rel: e.body for rel, e in entries.items()}
    body = b"".join(doctored.values())
    header["body"] = content_digest(body)
    header["entries"] = [[rel, e.digest, len(doctored[rel]), None] for rel, e in entries.items()]
    (kb / CACHE_FILE).write_bytes(json.dumps(header).encode() + b"\n" + body)
    same(load_records(kb), expected)


def test_the_bundled_knowledge_base_loads_the_same_warm_and_cold(tmp_path: Path) -> None:
    """Every kind of provenance block of the real papers survives the cache."""
    root = tmp_path / "kb"
    shutil.copytree(REPO / "taxonomy", root / "taxonomy")
    shutil.copytree(REPO / "papers", root / "papers")
    cold = load_records(root)
    assert len(cold.papers) > 700 and cold.problems == []
    same(load_records(root), cold)


def test_a_touched_file_is_hashed_and_an_edit_keeping_size_and_mtime_is_seen(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stat signature only lets unchanged files skip hashing: a new mtime alone leads to
    a hash (same content: still a hit), and a same-size edit with the old mtime put back is
    caught by the change time."""
    monkeypatch.setattr(paper_files, "RACY_NS", 0)  # trust signatures at once
    load_records(kb)
    assert read_cache(kb).entries[MINILLM].signature is not None
    path = kb / MINILLM
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    seen = checked_files(monkeypatch)
    load_records(kb)
    assert seen == []
    stat = path.stat()
    edit(kb, MINILLM, "year: 2023\n", "year: 2022\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    records = load_records(kb)
    assert seen == [MINILLM]
    assert next(p for p in records.papers if p.id == "gu2023minillm").year == 2022


def test_a_cache_made_for_another_key_is_not_used(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new model, package, pydantic or vocabulary changes the key: every entry is stale."""
    load_records(kb)
    monkeypatch.setattr(load_cache, "cache_key", lambda: "another key")
    assert read_cache(kb).entries == {}
    seen = checked_files(monkeypatch)
    load_records(kb)
    assert len(seen) == len(load_records(kb, cache=False).papers)


def test_an_unwritable_cache_location_does_not_crash(kb: Path) -> None:
    (kb / ".cache").write_text("a file where the cache directory would go", encoding="utf-8")
    same(load_records(kb), load_records(kb, cache=False))


def test_the_cache_is_written_atomically(kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the rename leaves the previous cache intact and no temporary file."""
    load_records(kb)
    before = (kb / CACHE_FILE).read_bytes()
    edit(kb, MINILLM, "year: 2023\n", "year: 2022\n")

    def refuse(src: str, dst: str) -> None:
        raise OSError("simulated failure before the rename")

    monkeypatch.setattr("kbtool.core.atomic.os.replace", refuse)
    records = load_records(kb)
    assert next(p for p in records.papers if p.id == "gu2023minillm").year == 2022
    assert (kb / CACHE_FILE).read_bytes() == before
    assert [p.name for p in (kb / CACHE_FILE).parent.iterdir()] == [CACHE_FILE.name]


@pytest.mark.parametrize(
    "doctor",
    [
        lambda row: [7, *row[1:]],  # a file name that is not a string
        lambda row: [row[0], None, *row[2:]],  # no digest
        lambda row: [*row[:2], str(row[2]), row[3]],  # a length that is not a number
        lambda row: [*row[:2], True, row[3]],  # a boolean is not a length
        lambda row: [*row[:3], [1, 2, 3]],  # a signature of three numbers
        lambda row: [*row[:3], [1, 2, 3, "4"]],  # a signature with a string in it
        lambda row: row[:3],  # a row one column short
    ],
)
def test_a_cache_header_with_a_malformed_row_is_ignored(
    kb: Path, doctor: Callable[[list[object]], list[object]]
) -> None:
    """Rows are checked column by column; one bad row means no cache, and a cold load."""
    expected = load_records(kb, cache=False)
    load_records(kb)
    header_line, body = (kb / CACHE_FILE).read_bytes().split(b"\n", 1)
    header = json.loads(header_line)
    header["entries"][1] = doctor(header["entries"][1])
    (kb / CACHE_FILE).write_bytes(json.dumps(header).encode() + b"\n" + body)
    assert read_cache(kb).entries == {}
    same(load_records(kb), expected)
    assert len(read_cache(kb).entries) == len(expected.papers)  # rewritten whole


def test_lengths_that_do_not_add_up_to_the_body_are_refused(kb: Path) -> None:
    load_records(kb)
    header_line, body = (kb / CACHE_FILE).read_bytes().split(b"\n", 1)
    header = json.loads(header_line)
    rows = header["entries"]
    rows[0][2], rows[1][2] = rows[0][2] + 5, rows[1][2] - 5  # same total, shifted bodies
    (kb / CACHE_FILE).write_bytes(json.dumps(header).encode() + b"\n" + body)
    entries = read_cache(kb).entries  # the slices are wrong, but each is only a candidate body...
    bad = {rel for rel, e in entries.items() if not e.body.endswith(b"}")}
    assert bad  # ...which does not parse as the model, so the load starts over from files
    same(load_records(kb), load_records(kb, cache=False))


def reference_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the loader's cross-file checks."""
    from kbtool.core import loader

    calls: list[int] = []
    original = loader.check_references

    def spy(records: Records, origin: dict[str, str]) -> None:
        calls.append(1)
        original(records, origin)

    monkeypatch.setattr(loader, "check_references", spy)
    return calls


def test_consistent_unchanged_inputs_skip_the_cross_file_checks(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that found no problem records a digest of its inputs; a load of the same inputs
    skips the cross-file checks, and any change to a paper, a method or a node brings them back."""
    calls = reference_checks(monkeypatch)
    cold = load_records(kb)
    assert calls == [1] and not cold.problems
    assert read_cache(kb).consistent is not None
    same(load_records(kb), cold)
    assert calls == [1]  # skipped: nothing changed
    edit(kb, MINILLM, "year: 2023\n", "year: 2022\n")
    load_records(kb)
    assert calls == [1, 1]
    load_records(kb)
    assert calls == [1, 1]  # consistent again, recorded again
    methods = kb / "taxonomy" / "methods" / "methods.yaml"
    methods.write_text(methods.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    load_records(kb)
    assert len(calls) == 3


@pytest.mark.parametrize("change", ["method", "node", "paper"])
def test_a_warm_load_reports_every_cross_file_problem_a_cold_load_reports(
    kb: Path, change: str
) -> None:
    load_records(kb)
    load_records(kb)  # the inputs are now recorded as consistent
    if change == "method":  # a method naming a paper that does not exist
        edit(kb, "taxonomy/methods/methods.yaml", "[gu2023minillm]", "[nobody2023none]")
    elif change == "node":  # a node that papers are placed on, removed
        nodes = kb / "taxonomy" / "nodes.yaml"
        text = nodes.read_text(encoding="utf-8")
        nodes.write_text(text.replace("id: feedback", "id: feedback-renamed"), encoding="utf-8")
    else:  # a paper placed on a node that does not exist
        edit(kb, MINILLM, "  - feedback\n", "  - feedback\n  - nowhere\n")
    cold = load_records(kb, cache=False)
    assert cold.problems
    same(load_records(kb), cold)
    same(load_records(kb), cold)
    assert read_cache(kb).consistent is None


def test_a_consistency_digest_of_the_wrong_type_means_no_cache(kb: Path) -> None:
    load_records(kb)
    header_line, body = (kb / CACHE_FILE).read_bytes().split(b"\n", 1)
    header = json.loads(header_line)
    header["consistent"] = 7
    (kb / CACHE_FILE).write_bytes(json.dumps(header).encode() + b"\n" + body)
    assert read_cache(kb).entries == {}
