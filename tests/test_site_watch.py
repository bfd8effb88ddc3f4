"""``kbtool serve``'s watcher: nothing changed, nothing built; an edited paper is rebuilt into the
served directory; bad data or a failed build is reported and the served site stays as it was.
(The rebuild step is tested directly, not the server's polling loop.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kbtool
from kbtool.site import BuildResult, build_site
from kbtool.site.watch import SiteWatcher

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "site_kb"
PAPER = "papers/gu-2023-minillm.yaml"
PAGE = "papers/gu-2023-minillm.html"
TITLE = "MiniLLM: Knowledge Distillation of Large Language Models"


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the fixture KB and its site, built as ``kbtool serve`` builds it."""
    root = tmp_path / "kb"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".cache"))
    out = tmp_path / "site"
    build_site(kbtool.load(root), out, incremental=True, benchmark_json=None, zoo_dir=None)
    return root, out


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_no_change_means_no_build(served: tuple[Path, Path]) -> None:
    root, out = served
    calls: list[object] = []

    def build(*args: object, **kwargs: object) -> BuildResult:
        calls.append(args)
        raise AssertionError("nothing changed: no build expected")

    watcher = SiteWatcher(root, out, build=build)
    assert watcher.poll() is None
    assert calls == []


def test_an_edited_paper_is_rebuilt_into_the_served_directory(served: tuple[Path, Path]) -> None:
    root, out = served
    watcher = SiteWatcher(root, out)
    replace(root / PAPER, TITLE, "MiniLLM (edited while serving)")
    message = watcher.poll()
    assert message is not None and message.startswith("rebuilt")
    assert "MiniLLM (edited while serving)" in (out / PAGE).read_text(encoding="utf-8")
    assert watcher.poll() is None  # nothing new since


def test_bad_data_is_reported_and_the_site_stays(served: tuple[Path, Path]) -> None:
    root, out = served
    before = (out / PAGE).read_bytes()
    watcher = SiteWatcher(root, out)
    replace(root / PAPER, "year: 2023", "year: not-a-year")
    message = watcher.poll()
    assert message is not None and "problems" in message and PAPER in message
    assert (out / PAGE).read_bytes() == before
    replace(root / PAPER, "year: not-a-year", "year: 2023")  # fixed: the next poll rebuilds
    fixed = watcher.poll()
    assert fixed is not None and fixed.startswith("rebuilt")


def test_a_busy_port_is_one_clear_error_line(tmp_path: Path) -> None:
    """``kbtool serve`` on a port another server holds: exit 1, our message naming the
    address, no traceback."""
    from typer.testing import CliRunner

    from kbtool.cli.app import app
    from kbtool.site import start_server

    root = tmp_path / "kb"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".cache"))
    holder = start_server(tmp_path, 0)
    try:
        port = holder.server_address[1]
        with pytest.raises(OSError, match=f"cannot serve on 127.0.0.1:{port}"):
            start_server(tmp_path, port)
        result = CliRunner().invoke(
            app, ["serve", "--root", str(root), "--port", str(port), "--out", str(tmp_path / "s")]
        )
    finally:
        holder.shutdown()
        holder.server_close()
    assert result.exit_code == 1
    assert f"error: cannot serve on 127.0.0.1:{port}:" in result.output
    assert "Traceback" not in result.output and ": : " not in result.output
