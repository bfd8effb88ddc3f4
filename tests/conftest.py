"""Shared pytest configuration: deterministic hypothesis runs in CI, one torch thread per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from hypothesis import settings

# CI (CI=true) explores the same examples on every run, so a red build is reproducible;
# developers keep hypothesis's default random exploration.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for every test once torch is loaded, as ``run_demo`` uses: tiny
    tensors gain nothing from more on a shared 2-core CPU, and in-process runs then match the
    demo's own. Tests of modules that never import torch do not pay for importing it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
