"""The node ids some fields may hold (pillars, elicitation, objectives) come from
``taxonomy/nodes.yaml``, not from Python: change the file and the model follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import kbtool
from kbtool.core import taxonomy
from kbtool.core.model import Paper
from kbtool.core.taxonomy import Vocabulary, bundled_vocabulary

PAPER: dict[str, Any] = {"id": "x2024y", "title": "Y", "year": 2024, "venue": "arXiv"}


def _tree(tmp_path: Path, elicitation: list[str]) -> Path:
    """A knowledge-base root whose taxonomy has the given elicitation children."""
    lines = ["nodes:"]
    rows = [
        ("kd-algorithms", None, 0),
        ("knowledge-elicitation", "kd-algorithms", 0),
        ("distillation-algorithms", "kd-algorithms", 1),
        ("supervised-fine-tuning", "distillation-algorithms", 0),
        *((node, "knowledge-elicitation", i) for i, node in enumerate(elicitation)),
    ]
    for node, parent, order in rows:
        lines += [
            f"- id: {node}",
            f"  name: {node}",
            f"  parent: {parent or 'null'}",
            f"  order: {order}",
            "  description: test node",
        ]
    (tmp_path / "taxonomy").mkdir()
    (tmp_path / "taxonomy" / "nodes.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_bundled_vocabulary_is_the_tree_of_the_bundled_taxonomy() -> None:
    kb = kbtool.load()
    vocabulary = bundled_vocabulary()
    assert vocabulary.pillars == tuple(n.id for n in kb.children(None))
    assert vocabulary.elicitation == tuple(n.id for n in kb.children("knowledge-elicitation"))
    assert vocabulary.objectives == tuple(n.id for n in kb.children("distillation-algorithms"))
    assert vocabulary.elicitation == taxonomy.ELICITATION_NODES
    assert vocabulary.objectives == taxonomy.OBJECTIVE_NODES
    assert vocabulary.pillars == taxonomy.PILLARS and len(vocabulary.pillars) >= 3


def test_sibling_order_not_file_order() -> None:
    nodes = [
        {"id": "b", "parent": None, "order": 1},
        {"id": "a", "parent": None, "order": 0},
        {"id": "y", "parent": "knowledge-elicitation", "order": 2},
        {"id": "x", "parent": "knowledge-elicitation", "order": 1},
    ]
    vocabulary = Vocabulary.from_nodes(nodes)
    assert vocabulary.pillars == ("a", "b")
    assert vocabulary.elicitation == ("x", "y")
    assert vocabulary.objectives == ()


def test_model_follows_the_taxonomy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new elicitation node in nodes.yaml is accepted without touching Python; a removed one
    is refused with the allowed values in the message."""
    with pytest.raises(ValidationError):
        Paper.model_validate({**PAPER, "elicitation": ["distillation-by-osmosis"]})
    monkeypatch.setenv("KBTOOL_ROOT", str(_tree(tmp_path, ["labeling", "distillation-by-osmosis"])))
    paper = Paper.model_validate({**PAPER, "elicitation": ["distillation-by-osmosis"]})
    assert paper.elicitation == ["distillation-by-osmosis"]
    with pytest.raises(ValidationError) as info:
        Paper.model_validate({**PAPER, "elicitation": ["feedback"]})
    message = str(info.value)
    assert "not a knowledge-elicitation node: feedback" in message
    assert "allowed: labeling, distillation-by-osmosis" in message


def test_unreadable_taxonomy_is_a_clear_validation_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KBTOOL_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(ValidationError) as info:
        Paper.model_validate({**PAPER, "objectives": ["supervised-fine-tuning"]})
    assert "cannot read the taxonomy" in str(info.value)
    assert Paper.model_validate({**PAPER, "objectives": []}).objectives == []  # nothing to check
