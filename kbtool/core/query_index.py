"""Query indexes of a knowledge base, built once: each filter of ``KnowledgeBase.query``
becomes a precomputed set of paper ids, and a query intersects them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from kbtool.core import provenance
from kbtool.core.model import Paper, TaxonomyNode

MEMO_SIZE = 1024
#: Ordered results remembered (each up to a tuple of every paper: kept few).
ORDERED_MEMO_SIZE = 128


def normalize_text(text: str) -> str:
    """Case-folded text with runs of whitespace collapsed: the key of substring filters."""
    return " ".join(text.casefold().split())


def intersection(sets: list[frozenset[str]], everything: frozenset[str]) -> frozenset[str]:
    """The ids in every set (smallest first, so each step is cheap); all ids for no sets."""
    if not sets:
        return everything
    ordered = sorted(sets, key=len)
    result = ordered[0]
    for other in ordered[1:]:
        if not result:
            break
        result = result & other
    return result


class QueryIndex:
    """Indexes built once, the first time a query needs them, so that ``query`` at 10,000
    papers only intersects precomputed sets: node -> papers on it or any descendant; method,
    year, placement basis, node origin, first-version month, survey fact -> papers; distinct
    normalised venues, teachers and students -> papers (substring filters test each distinct
    value once, not each paper); normalised title + authors per paper for ``text``."""

    def __init__(
        self,
        papers: dict[str, Paper],
        nodes: dict[str, TaxonomyNode],
        children: dict[str | None, list[str]],
        papers_at: dict[str, list[str]],
    ) -> None:
        self._papers = papers
        self._nodes = nodes
        self.rank = {pid: i for i, pid in enumerate(papers)}
        self.all_ids = frozenset(papers)
        self.under = _papers_under_each_node(nodes, children, papers_at)
        by_method: dict[str, set[str]] = {}
        for pid, p in papers.items():
            for m in p.methods:
                by_method.setdefault(m, set()).add(pid)
        self.by_method = _frozen(by_method)
        self.papers_at = {n: frozenset(ids) for n, ids in papers_at.items()}
        self._memo: dict[tuple[str, object], frozenset[str]] = {}
        self._ordered: dict[frozenset[str], tuple[Paper, ...]] = {}

    @functools.cached_property
    def filters(self) -> FilterTables:
        """The indexes of the other filters, built together the first time a query needs one
        (a site build only asks for the node and method sets)."""
        return FilterTables.build(self._papers, self._nodes, self.all_ids)

    def _remember(
        self, key: tuple[str, object], make: Callable[[], frozenset[str]]
    ) -> frozenset[str]:
        if key not in self._memo:
            if len(self._memo) >= MEMO_SIZE:  # arbitrary needles must not grow it forever
                self._memo.clear()
            self._memo[key] = make()
        return self._memo[key]

    def ordered(self, ids: frozenset[str], papers: dict[str, Paper]) -> tuple[Paper, ...]:
        """The papers of ``ids`` newest first; remembered, as the same sets come back (a node,
        a year range, a text)."""
        found = self._ordered.get(ids)
        if found is None:
            if len(self._ordered) >= ORDERED_MEMO_SIZE:
                self._ordered.clear()
            if len(ids) * 8 > len(papers):  # a large share: one pass beats a sort
                found = tuple(p for pid, p in papers.items() if pid in ids)
            else:
                found = tuple(papers[pid] for pid in sorted(ids, key=self.rank.__getitem__))
            self._ordered[ids] = found
        return found

    def matching_text(self, key: str) -> frozenset[str]:
        """Papers whose normalised title and authors contain ``key``."""
        return self._remember(
            ("text", key),
            lambda: frozenset(pid for pid, text in self.filters.text.items() if key in text),
        )

    def fact_or_node(self, fact: str) -> frozenset[str]:
        """Papers with the survey-table fact or placed on the node of that name."""
        return self._remember(
            ("fact", fact),
            lambda: (
                self.filters.by_fact.get(fact, frozenset()) | self.papers_at.get(fact, frozenset())
            ),
        )

    def using_any(self, method_ids: Iterable[str]) -> frozenset[str]:
        """Papers using at least one of the methods."""
        wanted = tuple(sorted(method_ids))
        return self._remember(
            ("methods", wanted),
            lambda: frozenset().union(*(self.by_method.get(m, frozenset()) for m in wanted)),
        )

    def since(self, start: tuple[int, int]) -> frozenset[str]:
        """Papers whose first version is from month ``start`` on (as ``dated_since``)."""

        def make() -> frozenset[str]:
            keep = [
                ids
                for (year, month), ids in self.filters.by_first_version.items()
                if (year > start[0] if month is None else (year, month) >= start)
            ]
            return frozenset().union(*keep)

        return self._remember(("since", start), make)

    def years(self, year_min: int | None, year_max: int | None) -> frozenset[str]:
        """Papers from ``year_min`` to ``year_max`` (either bound may be open)."""
        lo = year_min if year_min is not None else -1
        hi = year_max if year_max is not None else 10_000
        return self._remember(
            ("years", (lo, hi)),
            lambda: frozenset().union(
                *(ids for y, ids in self.filters.by_year.items() if lo <= y <= hi)
            ),
        )

    def containing(self, field: str, key: str) -> frozenset[str]:
        """Papers whose ``field`` ('venue', 'teachers' or 'students') has a normalised value
        containing ``key``."""
        tables = self.filters
        by_field = {"venue": tables.venue, "teachers": tables.teachers, "students": tables.students}
        groups = by_field[field]
        return self._remember(
            (field, key),
            lambda: frozenset().union(*(ids for value, ids in groups.items() if key in value)),
        )


@dataclass(frozen=True)
class FilterTables:
    """The indexes of every filter but node and method (see ``QueryIndex``)."""

    with_code: frozenset[str]
    without_code: frozenset[str]
    cited: frozenset[str]
    not_cited: frozenset[str]
    by_fact: dict[str, frozenset[str]]
    by_year: dict[int, frozenset[str]]
    by_basis: dict[str, frozenset[str]]
    by_origin: dict[str, frozenset[str]]
    by_first_version: dict[tuple[int, int | None], frozenset[str]]
    venue: dict[str, frozenset[str]]
    teachers: dict[str, frozenset[str]]
    students: dict[str, frozenset[str]]
    text: dict[str, str]

    @classmethod
    def build(
        cls, papers: dict[str, Paper], nodes: dict[str, TaxonomyNode], all_ids: frozenset[str]
    ) -> FilterTables:
        node_origin = {n: provenance.node_origin(node) for n, node in nodes.items()}
        by_fact: dict[str, set[str]] = {}
        by_year: dict[int, set[str]] = {}
        by_basis: dict[str, set[str]] = {}
        by_origin: dict[str, set[str]] = {}
        by_first_version: dict[tuple[int, int | None], set[str]] = {}
        venue: dict[str, set[str]] = {}
        teachers: dict[str, set[str]] = {}
        students: dict[str, set[str]] = {}
        for pid, p in papers.items():
            for f in (*p.objectives, *p.elicitation):
                by_fact.setdefault(f, set()).add(pid)
            by_year.setdefault(p.year, set()).add(pid)
            for b in provenance.bases_of(p):
                by_basis.setdefault(b, set()).add(pid)
            for o in {node_origin[n] for n in p.nodes if n in node_origin}:
                by_origin.setdefault(o, set()).add(pid)
            by_first_version.setdefault(p.first_version, set()).add(pid)
            venue.setdefault(normalize_text(p.venue), set()).add(pid)
            for t in p.teachers:
                teachers.setdefault(normalize_text(t), set()).add(pid)
            for t in p.students:
                students.setdefault(normalize_text(t), set()).add(pid)
        with_code = frozenset(pid for pid, p in papers.items() if p.code)
        cited = frozenset(pid for pid, p in papers.items() if p.cited_by_survey)
        return cls(
            with_code=with_code,
            without_code=all_ids - with_code,
            cited=cited,
            not_cited=all_ids - cited,
            by_fact=_frozen(by_fact),
            by_year=_frozen(by_year),
            by_basis=_frozen(by_basis),
            by_origin=_frozen(by_origin),
            by_first_version=_frozen(by_first_version),
            venue=_frozen(venue),
            teachers=_frozen(teachers),
            students=_frozen(students),
            text={
                pid: normalize_text(p.title + " " + " ".join(p.authors))
                for pid, p in papers.items()
            },
        )


K = TypeVar("K")


def _frozen(table: dict[K, set[str]]) -> dict[K, frozenset[str]]:
    return {key: frozenset(ids) for key, ids in table.items()}


def _papers_under_each_node(
    nodes: dict[str, TaxonomyNode],
    children: dict[str | None, list[str]],
    papers_at: dict[str, list[str]],
) -> dict[str, frozenset[str]]:
    """node -> papers placed on it or on any node below it, built bottom-up once."""
    under: dict[str, frozenset[str]] = {}

    def visit(node_id: str) -> frozenset[str]:
        ids = set(papers_at.get(node_id, ()))
        for child in children.get(node_id, []):
            ids |= visit(child)
        under[node_id] = frozenset(ids)
        return under[node_id]

    for pillar in children.get(None, []):
        visit(pillar)
    for node_id in nodes:  # nodes outside the tree (a dangling parent): their own papers
        if node_id not in under:
            visit(node_id)
    return under
