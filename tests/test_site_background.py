"""The downloads job that a large site writes from a forked process: the same files as when
it runs in the renderer's own process, redone there when the child fails, and run at once when
forking is not worth it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import kbtool
from kbtool.site import build_site
from kbtool.site.background import BackgroundJob

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "site_kb"


def _writer(target: Path, fail_in_child: bool = False) -> tuple[int, object]:
    parent = os.getpid()

    def job() -> None:
        if fail_in_child and os.getpid() != parent:
            raise RuntimeError("the child fails")
        target.write_text(str(os.getpid()), encoding="utf-8")

    return parent, job


def test_a_forked_job_is_done_when_wait_returns(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    parent, job = _writer(target)
    running = BackgroundJob(job, worth_it=True)  # type: ignore[arg-type]
    running.wait()
    assert target.read_text(encoding="utf-8") != str(parent)  # written by the child


def test_a_job_whose_child_fails_is_redone_here(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    parent, job = _writer(target, fail_in_child=True)
    running = BackgroundJob(job, worth_it=True)  # type: ignore[arg-type]
    running.wait()
    assert target.read_text(encoding="utf-8") == str(parent)


def test_a_small_job_runs_at_once_in_this_process(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    parent, job = _writer(target)
    BackgroundJob(job, worth_it=False)  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == str(parent)  # before any wait


def test_downloads_written_by_a_child_equal_those_written_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "kb"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".cache"))
    kb = kbtool.load(root, cache=False)
    forked: list[bool] = []
    original = BackgroundJob.__init__

    def spy(self: BackgroundJob, job: object, worth_it: bool) -> None:
        original(self, job, worth_it)  # type: ignore[arg-type]
        forked.append(self.process is not None)

    monkeypatch.setattr(BackgroundJob, "__init__", spy)
    sites = {}
    for name, threshold in (("in-process", 10**9), ("forked", 0)):
        monkeypatch.setattr("kbtool.site.render.MIN_PAPERS", threshold)
        out = tmp_path / name
        build_site(kb, out, benchmark_json=None, zoo_dir=None, cache_dir=tmp_path / f"c-{name}")
        sites[name] = {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in (out / "downloads").rglob("*")
            if p.is_file()
        }
    assert forked == [False, True]
    assert sites["forked"] == sites["in-process"]
    assert "downloads/kd-atlas.json" in sites["forked"] and len(sites["forked"]) > 3
