"""Checks of issue 14's placement data (taxonomy/crosswalk.yaml, taxonomy/reviews.yaml) against
the taxonomy: known node ids, one decision per entry, and the crosswalk rules of the issue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import NodeOrigin
from kbtool.core.safe_yaml import read_yaml

TAXONOMY = Path(__file__).resolve().parent.parent / "taxonomy"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    """The bundled knowledge base."""
    return kbtool.load()


@pytest.fixture(scope="module")
def crosswalk() -> dict[tuple[str, str], dict[str, Any]]:
    """Crosswalk entries keyed by (repo, section); a repeated key fails here."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for lst in read_yaml(TAXONOMY / "crosswalk.yaml")["lists"]:
        for entry in lst["sections"]:
            key = (lst["repo"], entry["section"])
            assert key not in out, f"duplicate crosswalk entry {key}"
            out[key] = entry
    return out


@pytest.fixture(scope="module")
def reviews() -> list[dict[str, Any]]:
    """The reviewed placements."""
    data: list[dict[str, Any]] = read_yaml(TAXONOMY / "reviews.yaml")["reviews"]
    return data


def test_each_crosswalk_entry_maps_or_says_why_not(
    crosswalk: dict[tuple[str, str], dict[str, Any]], kb: KnowledgeBase
) -> None:
    """Non-empty known nodes, or an empty list with an `unmapped` reason; never both."""
    for key, entry in crosswalk.items():
        nodes, reason = entry.get("nodes") or [], entry.get("unmapped")
        assert bool(nodes) != bool(reason), key
        assert set(nodes) <= set(kb.nodes), (key, nodes)


def _mapped(crosswalk: dict[tuple[str, str], dict[str, Any]], word: str) -> list[set[str]]:
    """Node sets of the mapped sections whose last heading contains ``word``."""
    return [
        set(e["nodes"])
        for (_, section), e in crosswalk.items()
        if e.get("nodes") and word.lower() in section.rsplit(">", 1)[-1].lower()
    ]


def _subtree(kb: KnowledgeBase, root: str) -> set[str]:
    return {root, *kb.descendants(root)}


def test_crosswalk_follows_the_issue_rules(
    crosswalk: dict[tuple[str, str], dict[str, Any]], kb: KnowledgeBase
) -> None:
    """Mapped sections on agents, speech, self-distillation, divergences, rewards and reasoning
    land in the subtrees the issue names."""
    rules = {
        "agents": _subtree(kb, "agent"),
        "speech": {"multi-modality"},
        "vision-language": {"multi-modality"},
        "self-distillation": _subtree(kb, "self-knowledge"),
        "privileged information": _subtree(kb, "self-knowledge"),
        "divergence": _subtree(kb, "distillation-algorithms"),
        "white-box logit": _subtree(kb, "distillation-algorithms"),
        "token-level on-policy": _subtree(kb, "distillation-algorithms"),
        "stability": _subtree(kb, "distillation-algorithms"),
        "rl-augmented": {"reinforcement-learning", "feedback", "preference", "rank-optimization"},
        "reward-guided": {"reinforcement-learning", "feedback", "preference", "rank-optimization"},
        "cot": {"thinking-pattern"},
        "reasoning": {"thinking-pattern"},
    }
    for word, allowed in rules.items():
        found = _mapped(crosswalk, word)
        assert found, f"no mapped section mentions {word!r}"
        for nodes in found:
            assert nodes & allowed, (word, nodes)


def test_topical_headings_are_unmapped(crosswalk: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Year headings and whole-chapter headings say nothing about the topic."""
    for (_, section), entry in crosswalk.items():
        if section in {"Papers > 2025", "Papers > 2026", "Papers", "Knowledge Distillation"}:
            assert not entry.get("nodes") and entry["unmapped"], section


def test_reviews_choose_known_nodes_or_drop(
    reviews: list[dict[str, Any]], kb: KnowledgeBase
) -> None:
    """One review per arXiv id; known nodes xor a drop reason; the shortlist names leaves."""
    ids = [r["arxiv_id"] for r in reviews]
    assert len(ids) == len(set(ids))
    leaves = {n for n in kb.nodes if not kb.children(n)}
    for r in reviews:
        assert ("nodes" in r) != ("drop" in r), r["arxiv_id"]
        assert set(r.get("nodes", [])) <= set(kb.nodes), r["arxiv_id"]
        assert len(r.get("shortlist", [])) <= 3 and set(r.get("shortlist", [])) <= leaves


def test_every_extension_node_is_used_by_the_placement_data(
    crosswalk: dict[tuple[str, str], dict[str, Any]],
    reviews: list[dict[str, Any]],
    kb: KnowledgeBase,
) -> None:
    """An extension node nobody places papers on would be an empty promise."""
    used = {n for e in crosswalk.values() for n in e.get("nodes") or []}
    used |= {n for r in reviews for n in r.get("nodes", [])}
    extensions = {n.id for n in kb.nodes.values() if n.origin == NodeOrigin.KD_ATLAS}
    assert extensions and extensions <= used
