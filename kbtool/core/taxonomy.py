"""Vocabularies derived from the taxonomy tree (pillars, elicitation and objective nodes).

They are read from ``taxonomy/nodes.yaml``, the source of truth, never written in Python: the
pillars are the roots, the elicitation nodes the children of ``knowledge-elicitation`` and the
objective nodes the children of ``distillation-algorithms``, each in the tree's sibling order.
``PILLARS``, ``ELICITATION_NODES`` and ``OBJECTIVE_NODES`` are those of the bundled knowledge
base (``$KBTOOL_ROOT`` or the checkout), read on first use.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbtool.core.paths import NODES_FILE, default_root
from kbtool.core.safe_yaml import YamlError, read_yaml

ELICITATION_PARENT = "knowledge-elicitation"
OBJECTIVE_PARENT = "distillation-algorithms"


class TaxonomyUnavailableError(ValueError):
    """The taxonomy file needed to know the allowed node ids cannot be read."""


@dataclass(frozen=True)
class Vocabulary:
    """Node ids that some fields of the model may hold, in taxonomy order."""

    pillars: tuple[str, ...]
    elicitation: tuple[str, ...]
    objectives: tuple[str, ...]

    @classmethod
    def from_nodes(cls, nodes: Iterable[Mapping[str, Any]]) -> Vocabulary:
        """The vocabulary of a tree given as node mappings (``id``, ``parent``, ``order``)."""
        listed = [n for n in nodes if isinstance(n, Mapping) and isinstance(n.get("id"), str)]

        def children(parent: str | None) -> tuple[str, ...]:
            found = [n for n in listed if n.get("parent") == parent]
            found.sort(key=lambda n: (_order(n), str(n["id"])))
            return tuple(str(n["id"]) for n in found)

        return cls(children(None), children(ELICITATION_PARENT), children(OBJECTIVE_PARENT))


def _order(node: Mapping[str, Any]) -> int:
    order = node.get("order", 0)
    return order if isinstance(order, int) else 0


def read_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary of the taxonomy file at ``path``."""
    return _read_vocabulary(str(path))


@functools.cache
def _read_vocabulary(path: str) -> Vocabulary:
    try:
        data = read_yaml(Path(path))
    except (YamlError, OSError) as exc:
        raise TaxonomyUnavailableError(f"cannot read the taxonomy ({exc})") from exc
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise TaxonomyUnavailableError(f"{path}: no list of nodes")
    return Vocabulary.from_nodes(nodes)


def bundled_vocabulary() -> Vocabulary:
    """The vocabulary of the bundled knowledge base's ``taxonomy/nodes.yaml``."""
    # Validation asks once per paper: a string key keeps this a dictionary lookup.
    return _read_vocabulary(os.path.join(default_root(), NODES_FILE))


def __getattr__(name: str) -> tuple[str, ...]:
    """``PILLARS``, ``ELICITATION_NODES`` and ``OBJECTIVE_NODES``, read on first use."""
    fields = {
        "PILLARS": "pillars",
        "ELICITATION_NODES": "elicitation",
        "OBJECTIVE_NODES": "objectives",
    }
    if name in fields:
        value: tuple[str, ...] = getattr(bundled_vocabulary(), fields[name])
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
