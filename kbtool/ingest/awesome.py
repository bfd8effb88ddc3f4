"""Parse the upstream paper list (Awesome-Knowledge-Distillation-of-LLMs README) into rows.

Only the tables under the taxonomy headings are read; each row becomes an ``AwesomeRow``
with the heading's node id, the printed title, link, venue, date, code and data links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kbtool.core.model import slugify

PILLAR_HEADINGS = {
    "kd-algorithms",
    "skill-distillation",
    "verticalization-distillation",
    "encoder-based-kd",
}
_LINK = re.compile(r"\[([^\]]*)\]\(\s*(\S+?)\s*\)")
_ARXIV = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class AwesomeRow:
    """One table row of the list, as printed, under the taxonomy node of its heading."""

    node: str
    line: int
    title: str
    url: str | None
    venue: str
    year: int | None
    month: int | None
    code: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    bold: bool = True

    @property
    def date(self) -> str:
        """The printed date as YYYY-MM (empty when missing)."""
        return f"{self.year:04d}-{self.month:02d}" if self.year and self.month else ""

    @property
    def arxiv_id(self) -> str | None:
        """The arXiv id of the title link, without version."""
        match = _ARXIV.search(self.url or "")
        return match.group(1) if match else None


@dataclass
class ParsedList:
    """Rows of the list plus the anomalies seen while parsing."""

    rows: list[AwesomeRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def heading_node(text: str) -> str:
    """Node id of a heading: its slug ('Medical & Healthcare' -> 'medical-healthcare')."""
    return slugify(re.sub(r"[^\w\s&.-]", "", text))


def _links(cell: str) -> list[str]:
    return [url for _, url in _LINK.findall(cell)]


def _parse_row(cells: list[str], node: str, line: int) -> AwesomeRow:
    title_cell = cells[0]
    match = _LINK.search(title_cell)
    if match:
        title, url = match.group(1), match.group(2)
    else:
        title, url = title_cell, None
    bold = "**" in title
    title = " ".join(title.replace("**", "").split())
    venue = cells[1].strip() if len(cells) > 1 else ""
    date = cells[2].strip() if len(cells) > 2 else ""
    date_match = _DATE.match(date)
    year = int(date_match.group(1)) if date_match else None
    month = int(date_match.group(2)) if date_match else None
    code = tuple(_links(cells[3])) if len(cells) > 3 else ()
    data = tuple(_links(cells[4])) if len(cells) > 4 else ()
    return AwesomeRow(node, line, title, url, venue, year, month, code, data, bold)


def parse_awesome(text: str, known_nodes: set[str]) -> ParsedList:
    """Read every paper row under a heading whose slug is a known taxonomy node."""
    parsed = ParsedList()
    node: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            slug = heading_node(heading)
            node = slug if slug in known_nodes else None
            continue
        if node is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not cells or cells[0].lower() == "title" or set(cells[0]) <= set(":- "):
            continue
        row = _parse_row(cells, node, number)
        if not row.title:
            parsed.notes.append(f"line {number}: row without a title skipped")
            continue
        if not row.bold:
            parsed.notes.append(f"line {number}: title is not bold: {row.title!r}")
        if row.url is None:
            parsed.notes.append(f"line {number}: title has no link: {row.title!r}")
        if row.year is None:
            parsed.notes.append(f"line {number}: no YYYY-MM date for {row.title!r}")
        parsed.rows.append(row)
    return parsed
