"""The query API on the small fixture KB; every expected list is worked out by hand.

Fixture papers, newest first (year, month, then id):
ko2024distillm (2024-02), gu2023minillm (2023-06), li2023chatdoctor (2023-03),
taori2023alpaca (2023-03), bai2022constitutional (2022-12), hinton2015distilling (2015-03).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Method, Paper, TaxonomyNode

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"

KO, GU, LI, TAORI, BAI, HINTON = (
    "ko2024distillm",
    "gu2023minillm",
    "li2023chatdoctor",
    "taori2023alpaca",
    "bai2022constitutional",
    "hinton2015distilling",
)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    """The fixture KB, loaded once (records are frozen, so sharing is safe)."""
    return kbtool.load(KB_SMALL)


def ids(papers: list[Paper]) -> list[str]:
    """Paper ids in result order."""
    return [p.id for p in papers]


def test_papers_are_newest_first(kb: KnowledgeBase) -> None:
    """Year, then month, descending; ties by id."""
    assert list(kb.papers) == [KO, GU, LI, TAORI, BAI, HINTON]


@pytest.mark.parametrize(
    "key", [GU, "2306.08543", "2306.08543v2", "2306.08543v12", "arXiv:2306.08543"]
)
def test_get_paper_by_id_or_arxiv(kb: KnowledgeBase, key: str) -> None:
    """A paper by id, or by arXiv id with or without version and prefix."""
    found = kb.get(key)
    assert isinstance(found, Paper) and found.id == GU


def test_get_method_and_node(kb: KnowledgeBase) -> None:
    """Methods and taxonomy nodes by id."""
    method = kb.get("minillm")
    node = kb.get("feature")
    assert isinstance(method, Method) and method.name == "MiniLLM"
    assert isinstance(node, TaxonomyNode) and node.parent == "knowledge-elicitation"
    hinton = kb.get("1503.02531v9")
    assert isinstance(hinton, Paper) and hinton.id == HINTON


@pytest.mark.parametrize("key", ["nope", "9999.99999", "2306.08544", "v2", ""])
def test_get_unknown_raises_key_error(kb: KnowledgeBase, key: str) -> None:
    """Unknown keys raise KeyError."""
    with pytest.raises(KeyError):
        kb.get(key)


def test_tree_navigation(kb: KnowledgeBase) -> None:
    """Pillars, children, descendants, ancestors in taxonomy order."""
    assert [n.id for n in kb.children(None)] == [
        "kd-algorithms",
        "skill-distillation",
        "verticalization-distillation",
    ]
    assert [n.id for n in kb.children("knowledge-elicitation")] == [
        "labeling",
        "feature",
        "feedback",
        "self-knowledge",
    ]
    assert kb.descendants("skill-distillation") == [
        "skill-distillation",
        "context-following",
        "instruction-following",
        "rag-capability",
        "alignment",
        "preference",
    ]
    assert [n.id for n in kb.ancestors("preference")] == [
        "skill-distillation",
        "alignment",
        "preference",
    ]
    assert kb.pillar_of("rag-capability") == "skill-distillation"
    assert kb.descendants("labeling") == ["labeling"]


@pytest.mark.parametrize(
    "node, expected",
    [
        ("kd-algorithms", [KO, GU, TAORI, BAI]),
        ("knowledge-elicitation", [KO, GU, TAORI, BAI]),
        ("distillation-algorithms", [KO, GU, BAI]),
        ("feedback", [KO, GU, BAI]),
        ("feature", [GU]),
        ("skill-distillation", [TAORI, BAI]),
        ("alignment", [BAI]),
        ("verticalization-distillation", [LI]),
        ("self-knowledge", []),
    ],
)
def test_papers_under_includes_descendants(
    kb: KnowledgeBase, node: str, expected: list[str]
) -> None:
    """Papers placed at the node or below, each once, newest first."""
    assert ids(kb.papers_under(node)) == expected


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, [KO, GU, LI, TAORI, BAI, HINTON]),
        ({"node": "distillation-algorithms"}, [KO, GU, BAI]),
        ({"method": "forward-kl"}, [KO, HINTON]),
        ({"method": "sft-objective"}, [LI, TAORI]),
        ({"year_min": 2023}, [KO, GU, LI, TAORI]),
        ({"year_max": 2022}, [BAI, HINTON]),
        ({"year_min": 2023, "year_max": 2023}, [GU, LI, TAORI]),
        ({"venue": "icml"}, [KO]),
        ({"venue": "NeurIPS"}, [HINTON]),
        ({"has_code": True}, [KO, GU, LI, TAORI]),
        ({"has_code": False}, [BAI, HINTON]),
        ({"teacher": "gpt"}, [KO, GU, LI]),
        ({"student": "opt"}, [KO, GU]),
        ({"objective": "supervised-fine-tuning"}, [LI, TAORI, BAI]),
        ({"objective": "reinforcement-learning"}, [BAI]),
        ({"elicitation": "feedback"}, [KO, GU, BAI]),
        ({"elicitation": "self-knowledge"}, [TAORI]),
        ({"teacher_access": "black-box"}, [LI, TAORI]),
        ({"teacher_access": "white-box"}, [KO, GU, HINTON]),
        ({"text": "distillation"}, [KO, GU]),
        ({"text": "HINTON"}, [HINTON]),
        ({"cited_by_survey": True}, [GU, TAORI, BAI, HINTON]),
        ({"cited_by_survey": False}, [KO, LI]),
    ],
)
def test_query_single_filters(
    kb: KnowledgeBase, filters: dict[str, Any], expected: list[str]
) -> None:
    """Each filter alone (elicitation/objective also match placement in that node)."""
    assert ids(kb.query(**filters)) == expected


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"node": "kd-algorithms", "year_min": 2023, "has_code": True}, [KO, GU, TAORI]),
        (
            {
                "node": "kd-algorithms",
                "year_min": 2023,
                "has_code": True,
                "teacher_access": "white-box",
            },
            [KO, GU],
        ),
        ({"node": "divergence-and-similarity", "student": "opt", "text": "minillm"}, [GU]),
        ({"node": "feedback", "cited_by_survey": False}, [KO]),
        (
            {
                "teacher": "chatgpt",
                "objective": "supervised-fine-tuning",
                "node": "medical-healthcare",
            },
            [LI],
        ),
        ({"venue": "icml", "year_max": 2023}, []),
    ],
)
def test_query_combined_filters(
    kb: KnowledgeBase, filters: dict[str, Any], expected: list[str]
) -> None:
    """Filters combine with AND."""
    assert ids(kb.query(**filters)) == expected


def test_query_unknown_node_or_method_raises(kb: KnowledgeBase) -> None:
    """A typo in a node or method id is an error, not an empty result."""
    with pytest.raises(KeyError):
        kb.query(node="feedbak")
    with pytest.raises(KeyError):
        kb.query(method="mini-llm")
    with pytest.raises(KeyError):
        kb.papers_under("nope")
    with pytest.raises(KeyError):
        kb.descendants("nope")


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"teacher_access": "black-box"}, ["sft-objective"]),
        ({"teacher_access": "white-box"}, ["forward-kl", "reverse-kl", "minillm"]),
        ({"on_policy": True}, ["minillm"]),
        ({"same_tokenizer_required": False}, ["sft-objective"]),
        ({"node": "feature"}, ["minillm"]),
        (
            {"node": "distillation-algorithms"},
            ["forward-kl", "reverse-kl", "minillm", "sft-objective"],
        ),
        ({"has_loss": False}, []),
        ({"teacher_access": "white-box", "on_policy": False}, ["forward-kl", "reverse-kl"]),
    ],
)
def test_methods_where(kb: KnowledgeBase, filters: dict[str, Any], expected: list[str]) -> None:
    """Methods by property, in file order."""
    assert [m.id for m in kb.methods_where(**filters)] == expected


def test_methods_under_and_papers_using(kb: KnowledgeBase) -> None:
    """Methods attached below a node; papers that list a method."""
    assert [m.id for m in kb.methods_under("knowledge-elicitation")] == ["minillm"]
    assert ids(kb.papers_using("reverse-kl")) == [GU]
    assert ids(kb.papers_using("minillm")) == [GU]


def test_stats(kb: KnowledgeBase) -> None:
    """Counts computed by hand from the fixture."""
    stats = kb.stats()
    assert stats["papers"] == 6 and stats["nodes"] == 18 and stats["methods"] == 4
    assert stats["placed_papers"] == 5 and stats["cited_only_papers"] == 1
    assert stats["with_code"] == 4 and stats["with_arxiv"] == 5 and stats["with_summary_facts"] == 1
    assert stats["per_pillar"] == {
        "kd-algorithms": 4,
        "skill-distillation": 2,
        "verticalization-distillation": 1,
    }
    assert stats["per_year"] == {2015: 1, 2022: 1, 2023: 3, 2024: 1}
    assert stats["per_node"]["feedback"] == 3 and stats["per_node"]["kd-algorithms"] == 0
    stats["per_node"]["feedback"] = 99  # computed once, but each caller gets its own copy
    assert kb.stats()["per_node"]["feedback"] == 3
