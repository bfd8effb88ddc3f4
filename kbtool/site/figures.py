"""The statistics page's charts: papers per year, node, teacher, objective and code availability.

Each figure carries its SVG (from :mod:`kbtool.site.plots`) and the table of numbers behind it,
so the page shows the data as text too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kbtool.core.taxonomy import bundled_vocabulary
from kbtool.site.plots import PALETTE, bar_chart, stacked_columns

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase

TOP_TEACHERS = 25


def statistics_figures(
    kb: KnowledgeBase, counts: dict[str, int], teachers: list[tuple[str, str, int]]
) -> list[dict[str, Any]]:
    """The statistics page's figures: SVG, caption and the data table behind each chart.

    ``counts`` are papers per node (descendants included); ``teachers`` are (key, spelling,
    papers) of the teacher facet, most used first.
    """
    papers = list(kb.papers.values())
    vocabulary = bundled_vocabulary()
    years, bucket = _year_buckets([p.year for p in papers])
    pillars = kb.children(None)
    per_pillar_year = {
        pl.id: Counter(
            bucket(p.year) for p in papers if pl.id in {kb.pillar_of(n) for n in p.nodes}
        )
        for pl in pillars
    }
    unplaced = Counter(bucket(p.year) for p in papers if not p.nodes)
    series = [(pl.name, [per_pillar_year[pl.id][y] for y in years]) for pl in pillars]
    series.append(("Cited only (no node)", [unplaced[y] for y in years]))
    figures = [
        _figure(
            "Papers per year by pillar",
            "papers-per-year.svg",
            stacked_columns("Papers per year by pillar", years, series),
            "A paper placed in two pillars counts in both.",
            ["Year", *[name for name, _ in series]],
            [[y, *[vals[i] for _, vals in series]] for i, y in enumerate(years)],
        )
    ]
    node_items = [(n.name, counts[n.id]) for n in kb.nodes.values()]
    depths = [len(kb.ancestors(n.id)) - 1 for n in kb.nodes.values()]
    figures.append(
        _figure(
            "Papers per taxonomy node",
            "papers-per-node.svg",
            bar_chart(
                "Papers per taxonomy node (descendants included)", node_items, indents=depths
            ),
            "Counts include the papers of each node's descendants.",
            ["Node", "Papers"],
            [[n.name, counts[n.id]] for n in kb.nodes.values()],
        )
    )
    teachers = teachers[:TOP_TEACHERS]
    figures.append(
        _figure(
            "Teacher models",
            "teachers.svg",
            bar_chart(
                f"Most used teacher models (top {TOP_TEACHERS})",
                [(name, n) for _, name, n in teachers],
                color=PALETTE[1],
            ),
            "Papers naming each teacher in the survey's summary table (case-insensitive).",
            ["Teacher", "Papers"],
            [[name, n] for _, name, n in teachers],
        )
    )
    for title, file, ids, attr, color in (
        ("Distillation objectives", "objectives.svg", vocabulary.objectives, "objectives", 2),
        (
            "Knowledge elicitation methods",
            "elicitation.svg",
            vocabulary.elicitation,
            "elicitation",
            3,
        ),
    ):
        counter = Counter(v for p in papers for v in getattr(p, attr))
        items = [(kb.nodes[i].name if i in kb.nodes else i, counter[i]) for i in ids]
        figures.append(
            _figure(
                title,
                file,
                bar_chart(title, items, color=PALETTE[color]),
                "Papers whose summary-table facts list each value.",
                ["Value", "Papers"],
                [list(item) for item in items],
            )
        )
    with_code = Counter(bucket(p.year) for p in papers if p.has_code)
    without_code = Counter(bucket(p.year) for p in papers if not p.has_code)
    code_series = [
        ("With code", [with_code[y] for y in years]),
        ("Without code", [without_code[y] for y in years]),
    ]
    figures.append(
        _figure(
            "Code availability",
            "code-availability.svg",
            stacked_columns("Code availability per year", years, code_series),
            f"{sum(1 for p in papers if p.has_code)} of {len(papers)} papers link to code.",
            ["Year", "With code", "Without code"],
            [[y, code_series[0][1][i], code_series[1][1][i]] for i, y in enumerate(years)],
        )
    )
    return figures


def _year_buckets(years: list[int], recent: int = 7) -> tuple[list[str], Callable[[int], str]]:
    """Column labels for per-year charts: the last ``recent`` years, older ones in one column."""
    if not years:
        return [], str
    last, first = max(years), min(years)
    cut = last - recent + 1
    if first >= cut - 1:
        return [str(y) for y in range(first, last + 1)], str
    older = f"\u2264{cut - 1}"
    return [older, *(str(y) for y in range(cut, last + 1))], (
        lambda y: older if y < cut else str(y)
    )


def _figure(
    heading: str, file: str, svg: str, caption: str, columns: list[str], rows: list[list[Any]]
) -> dict[str, Any]:
    width = re.search(r'width="(\d+)"', svg)
    return {
        "heading": heading,
        "file": file,
        "svg": svg,
        "alt": heading,
        "caption": caption,
        "width": int(width.group(1)) if width else 600,
        "columns": columns,
        "rows": rows,
    }
