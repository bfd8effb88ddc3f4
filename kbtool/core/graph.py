"""The knowledge base as a typed networkx graph of taxonomy nodes, papers and methods.

Vertices are ``"node:<id>"``, ``"paper:<id>"`` and ``"method:<id>"`` with a ``kind``
attribute; edges carry a ``type``: ``child_of`` (node -> parent), ``placed_in``
(paper -> node, with the placement's ``basis``), ``uses_method`` (paper -> method),
``introduces`` (paper -> method), ``belongs_to`` (method -> node), and between methods
``generalizes`` (general -> special, with the ``when`` condition) and its inverse
``special_case_of``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    import networkx as nx

    from kbtool.core.knowledge_base import KnowledgeBase
    from kbtool.core.model import Method


def vertex(kind: str, identifier: str) -> str:
    """The graph vertex name of a node, paper or method."""
    return f"{kind}:{identifier}"


def build_graph(kb: KnowledgeBase) -> nx.MultiDiGraph:
    """Build the typed multigraph of ``kb``."""
    import networkx as nx  # deferred: slow to import, and only the graph needs it

    g = nx.MultiDiGraph()
    for node in kb.nodes.values():
        g.add_node(vertex("node", node.id), kind="node", label=node.name)
    for method in kb.methods.values():
        g.add_node(vertex("method", method.id), kind="method", label=method.name)
    for paper in kb.papers.values():
        g.add_node(vertex("paper", paper.id), kind="paper", label=paper.title, year=paper.year)

    for node in kb.nodes.values():
        if node.parent is not None:
            g.add_edge(vertex("node", node.id), vertex("node", node.parent), type="child_of")
    for paper in kb.papers.values():
        for node_id in paper.nodes:
            placement = paper.basis_of(node_id)
            basis = placement.basis.value if placement else None
            g.add_edge(
                vertex("paper", paper.id), vertex("node", node_id), type="placed_in", basis=basis
            )
        for method_id in paper.methods:
            g.add_edge(vertex("paper", paper.id), vertex("method", method_id), type="uses_method")
    for method in kb.methods.values():
        m = vertex("method", method.id)
        for node_id in method.nodes:
            g.add_edge(m, vertex("node", node_id), type="belongs_to")
        for paper_id in method.papers:
            g.add_edge(vertex("paper", paper_id), m, type="introduces")
        for reduction in method.generalizes:
            other = vertex("method", reduction.method)
            g.add_edge(m, other, type="generalizes", when=reduction.when)
            g.add_edge(other, m, type="special_case_of", when=reduction.when)
    return g


def edges_of_type(g: nx.MultiDiGraph, edge_type: str) -> list[tuple[str, str]]:
    """All (source, target) pairs joined by an edge of ``edge_type``."""
    return [(u, v) for u, v, t in g.edges(data="type") if t == edge_type]


def related_methods(g: nx.MultiDiGraph, method_id: str) -> list[tuple[str, str, str]]:
    """(edge type, other method id, condition) for method-to-method edges leaving a method."""
    out = []
    for _, target, data in g.out_edges(vertex("method", method_id), data=True):
        if data["type"] in ("generalizes", "special_case_of"):
            out.append((data["type"], target.split(":", 1)[1], data.get("when", "")))
    return sorted(out)


def method_relations(methods: Mapping[str, Method], method_id: str) -> list[tuple[str, str, str]]:
    """What ``related_methods`` finds in the graph, read from the method nodes alone (the site
    needs only these edges, not a graph of every paper): (edge type, other method, condition)."""
    out = []
    for reduction in methods[method_id].generalizes:
        out.append(("generalizes", reduction.method, reduction.when))
    for other in methods.values():
        for reduction in other.generalizes:
            if reduction.method == method_id:
                out.append(("special_case_of", other.id, reduction.when))
    return sorted(out)
