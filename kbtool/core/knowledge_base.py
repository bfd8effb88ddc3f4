"""The in-memory knowledge base and its public query API (``kbtool.load()``)."""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.core import provenance
from kbtool.core.errors import KnowledgeBaseError
from kbtool.core.gc_pause import collection_paused
from kbtool.core.loader import Records, load_records
from kbtool.core.model import Method, Paper, TaxonomyNode, TeacherAccess
from kbtool.core.query_index import QueryIndex, intersection, normalize_text
from kbtool.core.taxonomy import bundled_vocabulary

if TYPE_CHECKING:
    from collections.abc import Sequence

    import networkx as nx

    from kbtool.retrieval.placement import LeafSuggestion
    from kbtool.retrieval.semantic import SearchHit


class KnowledgeBase:
    """Nodes, methods and papers by id, with indexes for fast queries.

    ``nodes``, ``methods`` and ``papers`` are dicts keyed by id, in taxonomy order, file order
    and newest-first order respectively.
    """

    def __init__(self, records: Records) -> None:
        self.root: Path = records.root
        self.nodes: dict[str, TaxonomyNode] = {n.id: n for n in _tree_order(records.nodes)}
        self.methods: dict[str, Method] = {m.id: m for m in records.methods}
        ordered = sorted(records.papers, key=lambda p: (-p.year, -(p.month or 0), p.id))
        self.papers: dict[str, Paper] = {p.id: p for p in ordered}
        self._children: dict[str | None, list[str]] = {}
        for node in self.nodes.values():
            self._children.setdefault(node.parent, []).append(node.id)

    # Paper indexes are built the first time they are needed: a load does not pay for them.
    @cached_property
    def _by_arxiv(self) -> dict[str, Paper]:
        return {p.arxiv_id: p for p in self.papers.values() if p.arxiv_id}

    @cached_property
    def _papers_at(self) -> dict[str, list[str]]:
        """Paper ids placed directly on each node, newest first."""
        papers_at: dict[str, list[str]] = {}
        for paper in self.papers.values():
            for node_id in paper.nodes:
                papers_at.setdefault(node_id, []).append(paper.id)
        return papers_at

    # --- lookups -------------------------------------------------------------------------
    def get(self, key: str) -> Paper | Method | TaxonomyNode:
        """A paper, method or node by id, or a paper by arXiv id (with or without version)."""
        if key in self.papers:
            return self.papers[key]
        if key in self.methods:
            return self.methods[key]
        if key in self.nodes:
            return self.nodes[key]
        bare = key.removeprefix("arXiv:").removeprefix("arxiv:").split("v")[0]
        if bare in self._by_arxiv:
            return self._by_arxiv[bare]
        raise KeyError(f"no paper, method or node with id or arXiv id {key!r}")

    def children(self, node_id: str | None) -> list[TaxonomyNode]:
        """Direct children of a node (``None``: the pillars), in taxonomy order."""
        return [self.nodes[c] for c in self._children.get(node_id, [])]

    def descendants(self, node_id: str) -> list[str]:
        """The node and every node below it, in taxonomy order."""
        self._require_node(node_id)
        out = [node_id]
        for child in self._children.get(node_id, []):
            out.extend(self.descendants(child))
        return out

    def ancestors(self, node_id: str) -> list[TaxonomyNode]:
        """The path from the pillar down to (and including) ``node_id``."""
        self._require_node(node_id)
        return list(self._paths[node_id])

    def pillar_of(self, node_id: str) -> str:
        """The top-level node above ``node_id``."""
        self._require_node(node_id)
        return self._paths[node_id][0].id

    @cached_property
    def _paths(self) -> dict[str, tuple[TaxonomyNode, ...]]:
        """Each node's path from its pillar, computed once (site pages ask for it per paper)."""
        paths: dict[str, tuple[TaxonomyNode, ...]] = {}
        for node_id in self.nodes:
            path: list[TaxonomyNode] = []
            current: str | None = node_id
            while current is not None and current not in (n.id for n in path):
                node = self.nodes[current]
                path.append(node)
                current = node.parent
            paths[node_id] = tuple(path[::-1])
        return paths

    def papers_under(self, node_id: str) -> list[Paper]:
        """Papers placed in the node or any of its descendants, newest first, each once."""
        self._require_node(node_id)
        return self._in_order(self._index.under[node_id])

    def count_under(self, node_id: str) -> int:
        """How many papers ``papers_under`` gives (without ordering them)."""
        self._require_node(node_id)
        return len(self._index.under[node_id])

    def methods_under(self, node_id: str) -> list[Method]:
        """Methods attached to the node or any of its descendants."""
        under = set(self.descendants(node_id))
        return [m for m in self.methods.values() if under.intersection(m.nodes)]

    def papers_using(self, method_id: str) -> list[Paper]:
        """Papers that list the method (introducing papers included)."""
        return self._in_order(self._index.by_method.get(method_id, frozenset()))

    # --- queries -------------------------------------------------------------------------
    def query(
        self,
        *,
        node: str | None = None,
        method: str | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        venue: str | None = None,
        has_code: bool | None = None,
        teacher: str | None = None,
        student: str | None = None,
        objective: str | None = None,
        elicitation: str | None = None,
        teacher_access: str | None = None,
        text: str | None = None,
        cited_by_survey: bool | None = None,
        since: str | None = None,
        basis: str | None = None,
        origin: str | None = None,
    ) -> list[Paper]:
        """Papers matching every given filter (all filters are optional), newest first.

        ``node`` includes descendants; ``objective`` and ``elicitation`` match the survey-table
        facts or the placement; ``venue``, ``teacher`` and ``student`` match case-insensitive
        substrings; ``teacher_access`` keeps papers using at least one method with that access;
        ``text`` searches titles and authors; ``since`` ('2024-03') keeps papers whose first
        (arXiv) version is from that month on; ``basis`` keeps papers with at least one
        placement of that basis; ``origin`` keeps papers on at least one node of that origin.
        """
        ix = self._index
        if objective is not None and objective not in bundled_vocabulary().objectives:
            allowed = ", ".join(bundled_vocabulary().objectives)  # what the model accepts
            raise KeyError(f"unknown objective {objective!r}; one of {allowed}")
        if elicitation is not None and elicitation not in bundled_vocabulary().elicitation:
            allowed = ", ".join(bundled_vocabulary().elicitation)
            raise KeyError(f"unknown elicitation {elicitation!r}; one of {allowed}")
        sets: list[frozenset[str]] = []
        if node is not None:
            self._require_node(node)
            sets.append(ix.under[node])
        if method is not None:
            self._require(method, self.methods, "method")
            sets.append(ix.by_method.get(method, frozenset()))
        if has_code is not None:
            sets.append(ix.filters.with_code if has_code else ix.filters.without_code)
        if cited_by_survey is not None:
            sets.append(ix.filters.cited if cited_by_survey else ix.filters.not_cited)
        for fact in (objective, elicitation):
            if fact is not None:
                sets.append(ix.fact_or_node(fact))
        if teacher_access is not None:
            methods = self.methods_where(teacher_access=teacher_access)
            sets.append(ix.using_any(m.id for m in methods))
        if basis is not None:
            sets.append(ix.filters.by_basis.get(provenance.check_basis(basis), frozenset()))
        if origin is not None:
            sets.append(ix.filters.by_origin.get(provenance.check_origin(origin), frozenset()))
        if since is not None:
            sets.append(ix.since(provenance.parse_month(since)))
        for name, needle in (("venue", venue), ("teachers", teacher), ("students", student)):
            if needle:
                sets.append(ix.containing(name, normalize_text(needle)))
        if year_min is not None or year_max is not None:
            sets.append(ix.years(year_min, year_max))
        if text:
            sets.append(ix.matching_text(normalize_text(text)))
        return self._in_order(intersection(sets, ix.all_ids))

    def _in_order(self, ids: frozenset[str]) -> list[Paper]:
        """The papers of ``ids`` in the knowledge base's order (newest first)."""
        return list(self._index.ordered(ids, self.papers))

    def methods_where(
        self,
        *,
        teacher_access: str | None = None,
        same_tokenizer_required: bool | None = None,
        on_policy: bool | None = None,
        node: str | None = None,
        has_loss: bool | None = None,
    ) -> list[Method]:
        """Methods matching every given property, in file order."""
        if teacher_access is not None and teacher_access not in {a.value for a in TeacherAccess}:
            raise KeyError(f"unknown teacher access {teacher_access!r}; black-box or white-box")
        under = set(self.descendants(node)) if node is not None else None
        out = []
        for m in self.methods.values():
            if teacher_access is not None and m.teacher_access.value != teacher_access:
                continue
            if (
                same_tokenizer_required is not None
                and m.same_tokenizer_required != same_tokenizer_required
            ):
                continue
            if on_policy is not None and m.on_policy != on_policy:
                continue
            if under is not None and not under.intersection(m.nodes):
                continue
            if has_loss is not None and (m.loss is not None) != has_loss:
                continue
            out.append(m)
        return out

    @cached_property
    def _index(self) -> QueryIndex:
        return QueryIndex(self.papers, self.nodes, self._children, self._papers_at)

    # --- similarity search (embeddings with kbtool[semantic], else BM25) -----------------------
    def search(self, text: str, k: int = 10) -> list[SearchHit]:
        """Papers and methods most similar to ``text`` (embeddings if installed, else BM25)."""
        # The façade calls down into retrieval lazily: core never imports it at module level,
        # and the embedding backend may load torch.
        from kbtool.retrieval.semantic import search

        return search(self, text, k)

    def suggest(
        self,
        title: str,
        abstract: str | None = None,
        k: int = 3,
        sections: Sequence[str] = (),
    ) -> list[LeafSuggestion]:
        """The ``k`` most likely taxonomy leaves for a new paper, with evidence papers;
        ``sections``: curated-list headings filing it, when known."""
        from kbtool.retrieval.placement import suggest  # lazy, as in ``search``

        return suggest(self, title, abstract, k, sections=sections)

    # --- derived views -------------------------------------------------------------------
    @cached_property
    def graph(self) -> nx.MultiDiGraph:
        """A networkx MultiDiGraph of nodes, papers and methods with typed edges."""
        from kbtool.core.graph import build_graph  # deferred: networkx is slow to import

        return build_graph(self)

    def stats(self) -> dict[str, Any]:
        """Counts for summaries: papers per pillar, year and node, code availability (computed
        once; each call returns its own copy)."""
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self._stats.items()}

    @cached_property
    def _stats(self) -> dict[str, Any]:
        per_pillar: Counter[str] = Counter()
        for paper in self.papers.values():
            for pillar in sorted({self.pillar_of(n) for n in paper.nodes}):
                per_pillar[pillar] += 1
        return {
            "papers": len(self.papers),
            "nodes": len(self.nodes),
            "methods": len(self.methods),
            "placed_papers": sum(1 for p in self.papers.values() if p.nodes),
            "cited_only_papers": sum(1 for p in self.papers.values() if not p.nodes),
            "with_code": sum(1 for p in self.papers.values() if p.has_code),
            "with_arxiv": sum(1 for p in self.papers.values() if p.arxiv_id),
            "with_summary_facts": sum(1 for p in self.papers.values() if p.source.summary_table),
            "per_pillar": dict(sorted(per_pillar.items())),
            "per_year": dict(sorted(Counter(p.year for p in self.papers.values()).items())),
            "per_node": {nid: len(self._papers_at.get(nid, [])) for nid in self.nodes},
        }

    # --- helpers -------------------------------------------------------------------------
    def _require_node(self, node_id: str) -> None:
        self._require(node_id, self.nodes, "taxonomy node")

    @staticmethod
    def _require(key: str, table: dict[str, Any], kind: str) -> None:
        if key not in table:
            raise KeyError(f"unknown {kind} {key!r}")


def _tree_order(nodes: list[TaxonomyNode]) -> list[TaxonomyNode]:
    """Depth-first order by each node's ``order`` among its siblings."""
    by_parent: dict[str | None, list[TaxonomyNode]] = {}
    known = {n.id for n in nodes}
    for node in nodes:
        parent = node.parent if node.parent in known else None
        by_parent.setdefault(parent, []).append(node)
    out: list[TaxonomyNode] = []

    def visit(parent: str | None) -> None:
        for node in sorted(by_parent.get(parent, []), key=lambda n: (n.order, n.id)):
            if node.id not in {o.id for o in out}:
                out.append(node)
                visit(node.id)

    visit(None)
    return out


def load(root: Path | str | None = None, *, cache: bool = True) -> KnowledgeBase:
    """Load and validate a knowledge base (the bundled one by default).

    Raises ``KnowledgeBaseError`` listing every problem when the data is invalid. ``cache``:
    use the validated load cache under ``root/.cache/`` (the result is the same either way).
    """
    with collection_paused():
        records = load_records(root, cache=cache)
        if records.problems:
            raise KnowledgeBaseError(records.problems)
        return KnowledgeBase(records)
