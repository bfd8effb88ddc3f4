"""``kbtool zoo`` forwards its options to ``python -m reference_impls.zoo``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kbtool.cli import app


def test_kbtool_zoo_runs_the_zoo_with_the_given_options(tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    args = ["zoo", "--losses", "forward_kl", "--seeds", "1", "--steps", "5", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "zoo.json").read_text(encoding="utf-8"))
    assert list(doc["results"]) == ["forward_kl"]
    assert doc["config"]["steps"] == 5


def test_kbtool_zoo_rejects_an_unknown_loss(tmp_path: Path) -> None:
    args = ["zoo", "--losses", "no_such_loss", "--out", str(tmp_path / "zoo"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert not (tmp_path / "zoo" / "zoo.json").exists()
