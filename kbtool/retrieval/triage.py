"""Triage of a newer upstream paper list: the papers the knowledge base lacks, each with the
taxonomy leaves :mod:`kbtool.retrieval.placement` suggests and the headings it is listed under."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kbtool.ingest.awesome import AwesomeRow, parse_awesome
from kbtool.ingest.titles import normalize_title, similar_titles
from kbtool.retrieval.placement import DEFAULT_NEIGHBOURS, LeafSuggestion, Method, suggest_many

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase
    from kbtool.retrieval.semantic import Encoder


@dataclass(frozen=True)
class TriageItem:
    """A paper of a newer list that the knowledge base lacks, with suggested leaves."""

    title: str
    url: str | None
    listed_under: tuple[str, ...]
    suggestions: tuple[LeafSuggestion, ...]


def missing_rows(kb: KnowledgeBase, rows: Sequence[AwesomeRow]) -> list[list[AwesomeRow]]:
    """Rows whose paper is not in ``kb`` (same arXiv id or a variant title), grouped per paper."""
    arxiv = {p.arxiv_id for p in kb.papers.values() if p.arxiv_id}
    titles = {normalize_title(p.title): p.title for p in kb.papers.values()}
    groups: dict[str, list[AwesomeRow]] = {}
    for row in rows:
        if row.arxiv_id and row.arxiv_id in arxiv:
            continue
        key = normalize_title(row.title)
        if key in titles or any(similar_titles(row.title, t) for t in titles.values()):
            continue
        groups.setdefault(row.arxiv_id or key, []).append(row)
    return list(groups.values())


def triage_awesome(
    kb: KnowledgeBase,
    text: str,
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    method: Method = "auto",
    encoder: Encoder | None = None,
) -> list[TriageItem]:
    """Suggest leaves for every paper of a (newer) upstream-style list that ``kb`` lacks.

    Only rows under headings that are taxonomy nodes are read (see ``kbtool.ingest.awesome``); the
    headings a paper sits under are reported as ``listed_under`` next to the suggestions.
    """
    groups = missing_rows(kb, parse_awesome(text, set(kb.nodes)).rows)
    found = suggest_many(
        kb,
        [(g[0].title, None) for g in groups],
        k,
        neighbours=neighbours,
        method=method,
        encoder=encoder,
    )
    return [
        TriageItem(g[0].title, g[0].url, tuple(dict.fromkeys(r.node for r in g)), tuple(s))
        for g, s in zip(groups, found, strict=True)
    ]
