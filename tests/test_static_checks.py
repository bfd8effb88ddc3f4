"""The project's own code passes ruff and ``mypy --strict`` (the standards ask for both)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", "kbtool", "reference_impls", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_kbtool() -> None:
    result = _run(str(BIN / "mypy"), "kbtool")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_reference_impls() -> None:
    result = _run(str(BIN / "mypy"), "reference_impls")
    assert result.returncode == 0, result.stdout + result.stderr
