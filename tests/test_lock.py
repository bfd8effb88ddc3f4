"""The lock file pins the whole dependency tree that pyproject.toml's ranges describe."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock.txt"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_lines() -> list[str]:
    lines = []
    for raw in LOCK.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _declared_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    return {_canonical(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in specs}


def test_every_locked_package_is_pinned_exactly() -> None:
    lines = _requirement_lines()
    assert len(lines) > 50
    loose = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", line)]
    assert loose == []


def test_lock_covers_every_declared_dependency_and_extra() -> None:
    locked = {_canonical(line.split("==")[0]) for line in _requirement_lines()}
    assert _declared_names() - locked == set()


def test_torch_is_locked_to_the_cpu_build_on_disk() -> None:
    torch_pins = [line for line in _requirement_lines() if line.startswith("torch==")]
    assert torch_pins and torch_pins[0].startswith("torch==2.13.0")
