"""Small, deterministic SVG charts written as text (no plotting library, no fonts, no network).

Every SVG of the site is drawn here, with one palette and one tick rule: horizontal bars
(counts per label) and stacked columns (counts per year split by a category) for the
statistics page, and the loss zoo's metric table, forward-vs-reverse-KL scatter and entropy
bars, drawn from ``zoo.json`` (schema: ``reference_impls/zoo/results.py``). Every label is
XML-escaped; the same input always gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:  # types only: reading the schema must not import torch
    from reference_impls.zoo.results import LossResult, ZooReport

PALETTE = (
    "#3f51b5",
    "#e65100",
    "#2e7d32",
    "#ad1457",
    "#00838f",
    "#6d4c41",
    "#5e35b1",
    "#9e9d24",
    "#d81b60",
    "#546e7a",
    "#f9a825",
    "#333333",
)
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""
LABEL_CHARS = 34  # longer labels are shortened with an ellipsis (full text in <title>)


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def svg_document(width: int, height: int, title: str, body: list[str], desc: str = "") -> str:
    """A standalone, accessible SVG: title (also drawn at the top), optional description."""
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} {FONT} '
            'font-size="12">',
            f"<title>{escape(title)}</title>",
            *([f"<desc>{escape(desc)}</desc>"] if desc else []),
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
            *body,
            "</svg>",
            "",
        ]
    )


def ticks(maximum: float) -> list[float]:
    """About five round tick values (steps of 1, 2 or 5 times a power of ten) from 0 to at
    least ``maximum``."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / 5
    steps = (base * 10.0**power for power in range(-6, 9) for base in (1, 2, 5))
    step = next(c for c in steps if c >= raw * (1 - 1e-9))
    n = math.ceil(maximum / step - 1e-9)
    return [round(i * step, 12) for i in range(n + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks within ``[lo, hi]`` on a log scale: 1-2-5, or denser for a short range."""
    found: list[float] = []
    for mantissas in ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)):
        found = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= m * 10.0**e <= hi
        ]
        if len(found) >= 4:
            break
    return found


def number(value: float) -> str:
    """A tick or label value, shortest form (``10``, ``0.25``, ``1e-05``)."""
    return f"{value:g}"


def text(x: float, y: float, s: str, **attrs: str | float) -> str:
    """A ``<text>`` element; keyword ``font_size`` becomes the attribute ``font-size``."""
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(s)}</text>'


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
    marks = ticks(max((c for _, c in items), default=0))
    scale = bar_w / marks[-1]
    body: list[str] = []
    axis_y = top + row_h * len(items)
    for t in marks:
        x = label_w + t * scale
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e0e0e0"/>'
        )
        body.append(text(x, axis_y + 16, number(t), text_anchor="middle", fill="#555"))
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
    return svg_document(width, height, title, body)


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
    marks = ticks(max(totals, default=0))
    scale = plot_h / marks[-1]
    base_y = top + plot_h
    body: list[str] = []
    for t in marks:
        y = base_y - t * scale
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e0e0e0"/>'
        )
        body.append(text(left - 4, y + 4, number(t), text_anchor="end", fill="#555"))
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
    return svg_document(width, height, title, body)


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


# ------------------------------------------------------------------------------ loss zoo


def _loss_color(losses: Sequence[str], loss: str) -> str:
    return PALETTE[losses.index(loss) % len(PALETTE)] if loss in losses else "#000"


def _runs(result: LossResult, key: str) -> list[float]:
    """``key`` of every run of a loss (empty when the report holds no runs)."""
    return [float(r["metrics"][key]) for r in result.get("runs", []) if key in r["metrics"]]


def _zoo_losses(report: ZooReport) -> list[str]:
    return list(report.get("losses") or report["results"])


def zoo_table(report: ZooReport) -> str:
    """The metric table: mean ± std over seeds per loss; the best value of a column in bold."""
    losses, results = _zoo_losses(report), report["results"]
    columns = [c for c in report["columns"] if c["header"]]
    name_w, col_w, row_h, top = 170, 118, 24, 58
    width = name_w + col_w * len(columns) + 20
    height = top + row_h * len(losses) + 44
    best: dict[str, float] = {}
    for c in columns:
        means = [results[lo]["mean"][c["key"]] for lo in losses if c["key"] in results[lo]["mean"]]
        if means and c["best"] == "min":
            best[c["key"]] = min(means)
        elif means and c["best"] == "max":
            best[c["key"]] = max(means)
        elif means and c["best"] == "one":
            best[c["key"]] = min(means, key=lambda m: abs(m - 1))
    n = len(report.get("seeds", []))
    body = [text(10, top - 10, "loss", font_weight="bold")]
    for j, c in enumerate(columns):
        x = name_w + col_w * (j + 1) - 8
        body.append(text(x, top - 10, c["header"], text_anchor="end", font_weight="bold"))
    body.append(f'<line x1="8" x2="{width - 8}" y1="{top - 4}" y2="{top - 4}" stroke="#888"/>')
    for i, loss in enumerate(losses):
        y = top + row_h * i
        if i % 2:
            body.append(
                f'<rect x="8" y="{y - 2}" width="{width - 16}" height="{row_h}" fill="#f3f5f8"/>'
            )
        color = _loss_color(losses, loss)
        body.append(f'<rect x="12" y="{y + 6}" width="10" height="10" fill="{color}"/>')
        kind = results[loss].get("kind", "")
        body.append(text(28, y + 15, loss + (" (black-box)" if kind == "black-box" else "")))
        for j, c in enumerate(columns):
            key, digits = c["key"], c["digits"]
            if key not in results[loss]["mean"]:
                continue
            mean, std = results[loss]["mean"][key], results[loss]["std"].get(key, 0.0)
            weight = "bold" if key in best and mean == best[key] else "normal"
            cell = f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
            x = name_w + col_w * (j + 1) - 8
            body.append(
                text(
                    x,
                    y + 15,
                    cell,
                    text_anchor="end",
                    font_weight=weight,
                    style="font-variant-numeric: tabular-nums",
                )
            )
    config, language = report.get("config", {}), report.get("language")
    entropy = f"Teacher entropy {language['teacher_entropy']:.3g} nats; " if language else ""
    foot = (
        f"{entropy}{config.get('steps', '?')} steps, batch {config.get('batch_size', '?')}, "
        f"{n} seed(s); bold = best mean of the column."
    )
    body.append(text(10, height - 14, foot, fill="#555"))
    desc = "; ".join(
        f"{lo}: "
        + ", ".join(
            f"{c['key']} {results[lo]['mean'][c['key']]:.3g}"
            for c in columns
            if c["key"] in results[lo]["mean"]
        )
        for lo in losses
    )
    title = f"Loss zoo: held-out metrics, mean ± std over {n} seed(s)"
    return svg_document(width, height, title, body, desc)


def zoo_fkl_rkl(report: ZooReport) -> str:
    """Held-out KL(p||q) against KL(q||p) on log axes: a dot per run, a ring per loss mean."""
    losses, results = _zoo_losses(report), report["results"]
    means = [
        (lo, results[lo]["mean"]["forward_kl"], results[lo]["mean"]["reverse_kl"])
        for lo in losses
        if {"forward_kl", "reverse_kl"} <= results[lo]["mean"].keys()
    ]
    points = [
        (lo, x, y)
        for lo in losses
        for x, y in zip(
            _runs(results[lo], "forward_kl"), _runs(results[lo], "reverse_kl"), strict=False
        )
    ]
    xs = [p[1] for p in points + means] or [1.0]
    ys = [p[2] for p in points + means] or [1.0]
    x_lo, x_hi = min(xs) / 1.3, max(xs) * 1.3
    y_lo, y_hi = min(ys) / 1.3, max(ys) * 1.3
    width, height, left, right, top, bottom = 790, 480, 70, 220, 40, 50
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))

    def py(y: float) -> float:
        return top + ph * (1 - (math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)))

    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for t in log_ticks(x_lo, x_hi):
        body.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#e0e0e0"/>'
        )
        body.append(text(px(t), top + ph + 16, number(t), text_anchor="middle", fill="#555"))
    for t in log_ticks(y_lo, y_hi):
        body.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            'stroke="#e0e0e0"/>'
        )
        body.append(text(left - 6, py(t) + 4, number(t), text_anchor="end", fill="#555"))
    body.append(
        text(
            left + pw / 2,
            height - 12,
            "KL(teacher || student): penalises teacher mass the student misses",
            text_anchor="middle",
        )
    )
    body.append(
        text(
            16,
            top + ph / 2,
            "KL(student || teacher): penalises mass the teacher lacks",
            text_anchor="middle",
            transform=f"rotate(-90 16 {top + ph / 2:.1f})",
        )
    )
    for lo, x, y in points:
        body.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" '
            f'fill="{_loss_color(losses, lo)}" fill-opacity="0.55"/>'
        )
    legend_x, ly = left + pw + 16, top + 8
    for i, (lo, x, y) in enumerate(means):
        color = _loss_color(losses, lo)
        body.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="6" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        body.append(f'<circle cx="{legend_x + 5}" cy="{ly - 4}" r="5" fill="{color}"/>')
        body.append(text(legend_x + 15, ly, lo))
        twins = [o for o, ox, oy in means[:i] if math.isclose(ox, x) and math.isclose(oy, y)]
        if twins:  # e.g. soft_cross_entropy trains exactly like forward_kl
            ly += 14
            body.append(text(legend_x + 15, ly, f"(same point as {twins[0]})", fill="#555"))
        ly += 18
    desc = "; ".join(f"{lo}: KL(p||q) {x:.3g}, KL(q||p) {y:.3g}" for lo, x, y in means)
    title = "Forward vs reverse KL to the teacher (held out, log axes)"
    return svg_document(width, height, title, body, desc)


def zoo_entropy(report: ZooReport) -> str:
    """Student/teacher entropy ratio per loss: bar = mean, dots = seeds, dashed line = 1."""
    results = report["results"]
    ratio = {
        lo: results[lo]["mean"]["entropy_ratio"]
        for lo in _zoo_losses(report)
        if "entropy_ratio" in results[lo]["mean"]
    }
    losses = sorted(ratio, key=lambda lo: -ratio[lo])
    values = [v for lo in losses for v in (ratio[lo], *_runs(results[lo], "entropy_ratio"))]
    marks = ticks(max(1.2, max(values, default=1.0) * 1.1))
    x_max = marks[-1]
    left, right, top, row_h, width = 190, 40, 50, 24, 760
    height = top + row_h * len(losses) + 50
    pw, bottom = width - left - right, top + row_h * len(losses)

    def px(x: float) -> float:
        return left + pw * x / x_max

    body: list[str] = []
    for t in marks:
        body.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top - 6}" y2="{bottom}" '
            'stroke="#e0e0e0"/>'
        )
        body.append(text(px(t), bottom + 16, number(t), text_anchor="middle", fill="#555"))
    colors = _zoo_losses(report)
    for i, lo in enumerate(losses):
        y = top + row_h * i
        mean, std = ratio[lo], results[lo]["std"].get("entropy_ratio", 0.0)
        body.append(text(left - 8, y + 15, lo, text_anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{px(mean) - left:.1f}" height="14" '
            f'fill="{_loss_color(colors, lo)}" fill-opacity="0.8"/>'
        )
        if std > 0:
            body.append(
                f'<line x1="{px(mean - std):.1f}" x2="{px(mean + std):.1f}" '
                f'y1="{y + 11}" y2="{y + 11}" stroke="#222"/>'
            )
        for v in _runs(results[lo], "entropy_ratio"):
            body.append(f'<circle cx="{px(v):.1f}" cy="{y + 11}" r="2.5" fill="#222"/>')
    body.append(
        f'<line x1="{px(1):.1f}" x2="{px(1):.1f}" y1="{top - 10}" y2="{bottom}" '
        'stroke="#222" stroke-dasharray="5 3"/>'
    )
    body.append(text(px(1) + 4, top - 12, "teacher (= 1)"))
    body.append(
        text(
            left + pw / 2,
            height - 10,
            "< 1: sharper than the teacher (mode-seeking); > 1: flatter (mass-covering)",
            text_anchor="middle",
            fill="#555",
        )
    )
    desc = "; ".join(f"{lo}: {ratio[lo]:.3g}" for lo in losses)
    return svg_document(width, height, "Student entropy / teacher entropy (held out)", body, desc)


#: The zoo's charts: file name, heading on the site, drawing function.
ZOO_CHARTS = (
    ("zoo_table.svg", "Metrics per loss", zoo_table),
    ("zoo_fkl_rkl.svg", "Forward vs reverse KL", zoo_fkl_rkl),
    ("zoo_entropy.svg", "Entropy ratio per loss", zoo_entropy),
)
