"""The typed networkx graph of the fixture KB: each edge type exists exactly where the data says."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

import kbtool
from kbtool.core.graph import edges_of_type, method_relations, related_methods

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"


@pytest.fixture(scope="module")
def graph() -> nx.MultiDiGraph:
    """The graph of the fixture KB."""
    return kbtool.load(KB_SMALL).graph


def edge_set(g: nx.MultiDiGraph, edge_type: str) -> set[tuple[str, str]]:
    """Edges of one type as a set (and no duplicates within the type)."""
    edges = edges_of_type(g, edge_type)
    assert len(edges) == len(set(edges)), f"duplicate {edge_type} edges"
    return set(edges)


def test_vertices(graph: nx.MultiDiGraph) -> None:
    """18 nodes, 4 methods and 6 papers, each with its kind."""
    kinds: dict[str, int] = {}
    for _, kind in graph.nodes(data="kind"):
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"node": 18, "method": 4, "paper": 6}
    assert graph.nodes["paper:gu2023minillm"]["year"] == 2023
    assert graph.nodes["node:medical-healthcare"]["label"] == "Medical & Healthcare"


def test_child_of(graph: nx.MultiDiGraph) -> None:
    """One edge from every non-pillar node to its parent."""
    assert edge_set(graph, "child_of") == {
        ("node:knowledge-elicitation", "node:kd-algorithms"),
        ("node:labeling", "node:knowledge-elicitation"),
        ("node:feature", "node:knowledge-elicitation"),
        ("node:feedback", "node:knowledge-elicitation"),
        ("node:self-knowledge", "node:knowledge-elicitation"),
        ("node:distillation-algorithms", "node:kd-algorithms"),
        ("node:supervised-fine-tuning", "node:distillation-algorithms"),
        ("node:divergence-and-similarity", "node:distillation-algorithms"),
        ("node:reinforcement-learning", "node:distillation-algorithms"),
        ("node:context-following", "node:skill-distillation"),
        ("node:instruction-following", "node:context-following"),
        ("node:rag-capability", "node:context-following"),
        ("node:alignment", "node:skill-distillation"),
        ("node:preference", "node:alignment"),
        ("node:medical-healthcare", "node:verticalization-distillation"),
    }


def test_placed_in(graph: nx.MultiDiGraph) -> None:
    """Paper -> node for every entry of every paper's ``nodes``."""
    assert edge_set(graph, "placed_in") == {
        ("paper:gu2023minillm", "node:feature"),
        ("paper:gu2023minillm", "node:feedback"),
        ("paper:gu2023minillm", "node:divergence-and-similarity"),
        ("paper:ko2024distillm", "node:feedback"),
        ("paper:ko2024distillm", "node:divergence-and-similarity"),
        ("paper:taori2023alpaca", "node:labeling"),
        ("paper:taori2023alpaca", "node:instruction-following"),
        ("paper:li2023chatdoctor", "node:medical-healthcare"),
        ("paper:bai2022constitutional", "node:feedback"),
        ("paper:bai2022constitutional", "node:reinforcement-learning"),
        ("paper:bai2022constitutional", "node:preference"),
    }
    bases = {d["basis"] for _, _, d in graph.edges(data=True) if d["type"] == "placed_in"}
    assert bases == {"survey-list"}  # every fixture placement comes from the survey's list


def test_uses_method(graph: nx.MultiDiGraph) -> None:
    """Paper -> method for every entry of every paper's ``methods``."""
    assert edge_set(graph, "uses_method") == {
        ("paper:gu2023minillm", "method:reverse-kl"),
        ("paper:gu2023minillm", "method:minillm"),
        ("paper:ko2024distillm", "method:forward-kl"),
        ("paper:taori2023alpaca", "method:sft-objective"),
        ("paper:li2023chatdoctor", "method:sft-objective"),
        ("paper:hinton2015distilling", "method:forward-kl"),
    }


def test_introduces(graph: nx.MultiDiGraph) -> None:
    """Only minillm names an introducing paper."""
    assert edge_set(graph, "introduces") == {("paper:gu2023minillm", "method:minillm")}


def test_belongs_to(graph: nx.MultiDiGraph) -> None:
    """Method -> node for every entry of every method's ``nodes``."""
    assert edge_set(graph, "belongs_to") == {
        ("method:forward-kl", "node:divergence-and-similarity"),
        ("method:reverse-kl", "node:divergence-and-similarity"),
        ("method:minillm", "node:divergence-and-similarity"),
        ("method:minillm", "node:feature"),
        ("method:sft-objective", "node:supervised-fine-tuning"),
    }


def test_generalizes_and_special_case_of(graph: nx.MultiDiGraph) -> None:
    """minillm generalizes reverse-kl, and the inverse edge carries the same condition."""
    assert edge_set(graph, "generalizes") == {("method:minillm", "method:reverse-kl")}
    assert edge_set(graph, "special_case_of") == {("method:reverse-kl", "method:minillm")}
    conditions = {d["when"] for _, _, d in graph.edges(data=True) if "when" in d}
    assert conditions == {"single-step rewards without clipping"}
    assert related_methods(graph, "minillm") == [
        ("generalizes", "reverse-kl", "single-step rewards without clipping")
    ]
    assert related_methods(graph, "reverse-kl") == [
        ("special_case_of", "minillm", "single-step rewards without clipping")
    ]
    assert related_methods(graph, "forward-kl") == []


def test_no_other_edge_types(graph: nx.MultiDiGraph) -> None:
    """The edge count is exactly the sum of the typed edges above."""
    types = {t for _, _, t in graph.edges(data="type")}
    assert types == {
        "child_of",
        "placed_in",
        "uses_method",
        "introduces",
        "belongs_to",
        "generalizes",
        "special_case_of",
    }
    assert graph.number_of_edges() == 15 + 11 + 6 + 1 + 5 + 1 + 1


def test_method_relations_read_from_the_methods_equal_the_graphs() -> None:
    """The site reads method-to-method relations without building the paper graph; on the
    bundled knowledge base (many reductions) they are the graph's, method by method."""
    kb = kbtool.load()
    assert sum(len(m.generalizes) for m in kb.methods.values()) > 5
    for method_id in kb.methods:
        assert method_relations(kb.methods, method_id) == related_methods(kb.graph, method_id)
