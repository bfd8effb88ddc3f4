"""The site's "New since the survey" page (newest papers, a monthly timeline, what each survey
node gained) and the provenance every page shows: extension nodes marked as ours, the basis of
each placement, and venue years ('ICLR 2024 (arXiv 2023-06)')."""

from __future__ import annotations

import re
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from kbtool.core import provenance
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Paper
from kbtool.site.plots import monthly_timeline

PAGE = "new-since-survey.md"
TIMELINE = "new-since-survey/timeline.svg"
BASIS_NAMES = {
    "survey-list": "the survey's list",
    "crosswalk": "crosswalk of a curated list",
    "reviewed": "reviewed by KD Atlas",
}
ORIGIN_NAMES = {"survey": "the survey's taxonomy", "kd-atlas": "KD Atlas extension"}


def new_papers(kb: KnowledgeBase) -> list[Paper]:
    """Papers new since the survey, newest first (by first-version month, then id); found
    once per loaded knowledge base (which does not change)."""
    found = _NEW_PAPERS.get(kb)
    if found is None:
        papers = [p for p in kb.papers.values() if provenance.is_new_since_survey(p)]
        found = sorted(
            papers, key=lambda p: (-p.first_version[0], -(p.first_version[1] or 0), p.id)
        )
        _NEW_PAPERS[kb] = found
    return list(found)


_NEW_PAPERS: weakref.WeakKeyDictionary[KnowledgeBase, list[Paper]] = weakref.WeakKeyDictionary()


def site_globals(kb: KnowledgeBase) -> dict[str, Any]:
    """Values every template may use: node origins, basis names, the venue label."""
    return {
        "origin_of": {nid: provenance.node_origin(n) for nid, n in kb.nodes.items()},
        "basis_names": BASIS_NAMES,
        "origin_names": ORIGIN_NAMES,
        "venue_label": provenance.venue_label,
        "new_count": len(new_papers(kb)),
        "new_since": provenance.NEW_SINCE_TEXT,
    }


def row_facets(kb: KnowledgeBase, paper: Paper) -> dict[str, str]:
    """The paper index's data attributes for the basis and origin filters."""
    origins = {provenance.node_origin(kb.nodes[n]) for n in paper.nodes if n in kb.nodes}
    return {
        "data-bases": " ".join(sorted(provenance.bases_of(paper))),
        "data-origins": " ".join(sorted(origins)),
    }


def _category(kb: KnowledgeBase, paper: Paper, extensions: list[str]) -> str:
    """The timeline's stack of a paper: its first extension node, else its first pillar."""
    for node_id in paper.nodes:
        if node_id in extensions:
            return kb.nodes[node_id].name
    if paper.nodes:
        return kb.nodes[kb.pillar_of(paper.nodes[0])].name
    return "Not placed"


def _months(first: tuple[int, int], last: tuple[int, int]) -> list[str]:
    out, (year, month) = [], first
    while (year, month) <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def timeline(kb: KnowledgeBase, papers: list[Paper]) -> dict[str, Any]:
    """The monthly timeline SVG (each paper counted once) and its data table."""
    extensions = [nid for nid, n in kb.nodes.items() if provenance.node_origin(n) == "kd-atlas"]
    dated = [p for p in papers if p.first_version[1]]
    stamps = sorted({(p.first_version[0], p.first_version[1] or 1) for p in dated})
    months = _months(stamps[0], stamps[-1]) if stamps else []
    per: dict[str, Counter[str]] = {}
    for paper in dated:
        month = provenance.first_version_month(paper) or ""
        per.setdefault(_category(kb, paper, extensions), Counter())[month] += 1
    order = [n.name for n in kb.children(None)] + [kb.nodes[e].name for e in extensions]
    names = [name for name in [*order, "Not placed"] if name in per]
    series = [(name, [per[name][m] for m in months]) for name in names]
    title = "Papers per month since the survey"
    svg = monthly_timeline(title, months, series)
    width = re.search(r'width="(\d+)"', svg)
    return {
        "svg": svg,
        "file": TIMELINE,
        "alt": title,
        "width": int(width.group(1)) if width else 600,
        "columns": ["Month", *names],
        "rows": [[m, *[per[n][m] for n in names]] for m in months],
    }


def gained(kb: KnowledgeBase, papers: list[Paper]) -> list[tuple[str, int, int]]:
    """(survey node id, papers it gained since the survey, its depth), in taxonomy order."""
    new_ids = {p.id for p in papers}
    out = []
    for node_id, node in kb.nodes.items():
        if provenance.node_origin(node) != "survey":
            continue
        count = sum(1 for p in kb.papers_under(node_id) if p.id in new_ids)
        out.append((node_id, count, len(kb.ancestors(node_id)) - 1))
    return out


def render_page(
    kb: KnowledgeBase,
    write: Callable[..., None],
    write_file: Callable[[str, str], None],
    front: Markup,
) -> None:
    """Write the page and its timeline SVG."""
    papers = new_papers(kb)
    figure = timeline(kb, papers)
    write_file(TIMELINE, figure.pop("svg"))
    extensions = [n for n in kb.nodes.values() if provenance.node_origin(n) == "kd-atlas"]
    write(
        PAGE,
        "new-since-survey.md.j2",
        "index",
        front_matter=front,
        papers=papers,
        figure=figure,
        gained=gained(kb, papers),
        extensions=extensions,
        basis_counts=Counter(b for p in papers for b in provenance.bases_of(p)),
    )
