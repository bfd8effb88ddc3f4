"""Tables that fit the terminal: ids and numbers are never cut, text columns wrap, and when
even that does not fit the least important columns are left out (and named in a caption)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

#: A rich table with the default box spends 3 characters per column plus 1 on borders.
BORDER_PER_COLUMN = 3


@dataclass(frozen=True)
class Column:
    """A column: ``keep`` ranks how long it survives a narrow terminal (higher stays longer);
    ``wrap`` columns fold onto several lines, the others keep their cells whole."""

    header: str
    keep: int
    wrap: bool = False
    min_width: int = 10
    justify: str = "left"


def short_loss(dotted: str | None) -> str:
    """``reference_impls.kl.forward_kl`` -> ``forward_kl`` (what users type at ``kbtool run``)."""
    return dotted.rsplit(".", 1)[-1] if dotted else ""


def _width(column: Column, cells: Sequence[str]) -> int:
    """Narrowest width the column can take without cutting a word it must keep whole."""
    header = len(column.header)
    if column.wrap:
        longest_word = max((len(w) for c in cells for w in c.split()), default=0)
        return max(header, min(column.min_width, longest_word))
    return max([header, *(max((len(line) for line in c.splitlines()), default=0) for c in cells)])


def fitted_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    title: str | None = None,
) -> Table:
    """A table of ``rows`` no wider than ``width`` characters."""
    shown = list(range(len(columns)))
    widths = [_width(c, [row[i] for row in rows]) for i, c in enumerate(columns)]

    def needed() -> int:
        return sum(widths[i] for i in shown) + BORDER_PER_COLUMN * len(shown) + 1

    while len(shown) > 1 and needed() > width:
        drop = min(shown, key=lambda i: (columns[i].keep, -i))
        shown.remove(drop)
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    caption = f"(not shown at this width: {', '.join(hidden)})" if hidden else None
    table = Table(title=title, caption=caption)
    for i in shown:
        column = columns[i]
        table.add_column(
            column.header,
            justify="right" if column.justify == "right" else "left",
            no_wrap=not column.wrap,
            overflow="fold",
            min_width=widths[i],
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
