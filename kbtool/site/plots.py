"""Small, deterministic SVG charts written as text (no plotting library, no fonts, no network).

Two shapes cover the statistics page: horizontal bars (counts per label) and stacked columns
(counts per year split by a category). Every label is XML-escaped; the same input always
gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

PALETTE = ("#3f51b5", "#e65100", "#2e7d32", "#ad1457", "#00838f", "#6d4c41", "#5e35b1", "#9e9d24")
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""
LABEL_CHARS = 34  # longer labels are shortened with an ellipsis (full text in <title>)


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} {FONT} '
            'font-size="12">',
            f"<title>{escape(title)}</title>",
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
            *body,
            "</svg>",
            "",
        ]
    )


def _ticks(maximum: int) -> list[int]:
    """About five round tick values from 0 to at least ``maximum``."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / 5
    steps = (base * 10**power for power in range(9) for base in (1, 2, 5))
    step = next(c for c in steps if c >= raw)
    top = -(-maximum // step) * step
    return list(range(0, top + 1, step))


def bar_chart(
    title: str,
    items: Sequence[tuple[str, int]],
    *,
    color: str = PALETTE[0],
    indents: Sequence[int] | None = None,
) -> str:
    """Horizontal bars, one per (label, count), in the given order.

    ``indents`` (one level per item) left-aligns the labels and indents them, for trees.
    """
    label_w, bar_w, row_h, top = 250, 420, 20, 34
    width = label_w + bar_w + 60
    height = top + row_h * max(1, len(items)) + 28
    ticks = _ticks(max((c for _, c in items), default=0))
    scale = bar_w / ticks[-1]
    body: list[str] = []
    axis_y = top + row_h * len(items)
    for t in ticks:
        x = label_w + t * scale
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e0e0e0"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#555">{t}</text>'
        )
    if not items:
        body.append(f'<text x="{label_w}" y="{top + 14}" fill="#555">no data</text>')
    for i, (label, count) in enumerate(items):
        y = top + i * row_h
        w = count * scale
        if indents is None:
            anchor = f'x="{label_w - 6}" text-anchor="end"'
            shown = _short(label)
        else:
            anchor = f'x="{8 + 12 * indents[i]}"'
            shown = _short(label, LABEL_CHARS - 2 * indents[i])
        body.append(
            f'<text {anchor} y="{y + 14}"><title>{escape(label)}</title>{escape(shown)}</text>'
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
            f"<title>{escape(label)}: {count}</title></rect>"
        )
        body.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" fill="#333">{count}</text>')
    return _svg(width, height, title, body)


def stacked_columns(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    labels: Sequence[str] | None = None,
) -> str:
    """Vertical columns per category (e.g. year), each stacked from the series' values.

    ``labels`` (default: the categories) are printed below the columns; an empty one is not.
    """
    left, plot_h, top, legend_w = 40, 240, 34, 240
    col_w = max(18, min(48, 640 // max(1, len(categories))))
    width = max(520, left + col_w * len(categories) + 20)
    per_row = max(1, (width - 16) // legend_w)
    legend_h = 22 * (-(-len(series) // per_row))
    height = top + plot_h + 30 + legend_h
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    ticks = _ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    base_y = top + plot_h
    body: list[str] = []
    for t in ticks:
        y = base_y - t * scale
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e0e0e0"/>'
        )
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{t}</text>'
        )
    for i, category in enumerate(categories):
        x = left + i * col_w + 3
        y = float(base_y)
        for s, (name, values) in enumerate(series):
            h = values[i] * scale
            if values[i]:
                y -= h
                body.append(
                    f'<rect x="{x}" y="{y:.1f}" width="{col_w - 6}" height="{h:.1f}" '
                    f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(category)}, '
                    f"{escape(name)}: {values[i]}</title></rect>"
                )
        label = category if labels is None else labels[i]
        if label:
            body.append(
                f'<text x="{x + (col_w - 6) / 2:.1f}" y="{base_y + 14}" text-anchor="middle" '
                f'font-size="11">{escape(label)}</text>'
            )
        if totals[i]:
            body.append(
                f'<text x="{x + (col_w - 6) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'font-size="10" fill="#333">{totals[i]}</text>'
            )
    for s, (name, _) in enumerate(series):
        lx = 8 + (s % per_row) * legend_w
        ly = base_y + 30 + (s // per_row) * 22
        body.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
        )
        body.append(f'<text x="{lx + 18}" y="{ly + 11}">{escape(_short(name, 30))}</text>')
    return _svg(width, height, title, body)


def monthly_timeline(
    title: str, months: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]
) -> str:
    """Stacked columns per month ('2024-03', ...), labelled every quarter (January, April,
    July, October) and at the first month when no quarter label is close to it, so that years
    of months stay readable (each column keeps its month in its tooltip)."""
    quarter = [int(m[-2:]) % 3 == 1 for m in months]
    first_quarter = quarter.index(True) if True in quarter else len(months)
    labels = [
        m if quarter[i] or (i == 0 and first_quarter >= 2) else "" for i, m in enumerate(months)
    ]
    return stacked_columns(title, months, series, labels)
