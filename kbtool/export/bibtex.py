"""BibTeX export and import of papers with bibtexparser v2.

Export: ``@misc`` with ``eprint``/``archivePrefix`` for arXiv-only papers, ``@inproceedings``
for conference papers, ``@article`` for journals. Titles keep their case (outer braces) and
LaTeX specials are escaped. Import reads such entries back into papers (round trip).
"""

from __future__ import annotations

import re
from typing import Any

from bibtexparser import model
from bibtexparser.entrypoint import parse_string, write_string
from bibtexparser.library import Library

from kbtool.core.model import Paper

JOURNALS = {"TACL", "TMLR", "JMLR", "PNAS", "IJCV", "Nature"}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_UNESCAPE = {v: k for k, v in _SPECIALS.items()}


class BibtexError(ValueError):
    """The BibTeX text could not be read as papers."""


def escape_latex(text: str) -> str:
    """Escape characters that are special in BibTeX/LaTeX."""
    return "".join(_SPECIALS.get(ch, ch) for ch in text)


def unescape_latex(text: str) -> str:
    """Inverse of ``escape_latex``."""
    pattern = "|".join(re.escape(k) for k in sorted(_UNESCAPE, key=len, reverse=True))
    return re.sub(pattern, lambda m: _UNESCAPE[m.group(0)], text)


def _entry(paper: Paper) -> model.Entry:
    fields: list[tuple[str, str]] = [("title", "{" + escape_latex(paper.title) + "}")]
    if paper.authors:
        fields.append(("author", " and ".join(escape_latex(a) for a in paper.authors)))
    fields.append(("year", str(paper.year)))
    if paper.month:
        fields.append(("month", MONTHS[paper.month - 1]))
    if paper.venue in JOURNALS:
        entry_type = "article"
        fields.append(("journal", escape_latex(paper.venue)))
    elif paper.venue in ("arXiv", "Other") or not paper.venue:
        entry_type = "misc"
        fields.append(("howpublished", paper.venue))
    else:
        entry_type = "inproceedings"
        fields.append(("booktitle", escape_latex(paper.venue)))
    if paper.arxiv_id:
        fields += [("eprint", paper.arxiv_id), ("archivePrefix", "arXiv")]
    if paper.url:
        fields.append(("url", paper.url))
    if paper.nodes:
        fields.append(("keywords", ", ".join(paper.nodes)))
    # Months are written as BibTeX's month macros (jun, not {jun}) so styles localise them.
    return model.Entry(
        entry_type,
        paper.id,
        [model.Field(k, v, enclosing="no-enclosing" if k == "month" else None) for k, v in fields],
    )


def to_bibtex(papers: list[Paper]) -> str:
    """BibTeX text of ``papers`` in the given order."""
    library = Library([_entry(p) for p in papers])
    return str(write_string(library))


def _strip_outer_braces(value: str) -> str:
    value = value.strip()
    if value.startswith("{") and value.endswith("}"):
        depth = 0
        for i, ch in enumerate(value):
            if ch == "{" and (i == 0 or value[i - 1] != "\\"):
                depth += 1
            elif ch == "}" and value[i - 1] != "\\":
                depth -= 1
                if depth == 0 and i < len(value) - 1:
                    return value
        return value[1:-1]
    return value


def entry_to_data(entry: model.Entry) -> dict[str, Any]:
    """Plain paper data (not yet validated) from one BibTeX entry."""
    f = {k.lower(): str(v.value) for k, v in entry.fields_dict.items()}

    def text(name: str) -> str:
        return unescape_latex(_strip_outer_braces(f[name])) if name in f else ""

    venue = (
        text("journal")
        or text("booktitle")
        or text("howpublished")
        or ("arXiv" if f.get("archiveprefix", "").lower() == "arxiv" else "Other")
    )
    month = f.get("month", "").strip().lower()[:3]
    data: dict[str, Any] = {
        "id": entry.key,
        "title": " ".join(text("title").split()),
        "authors": [
            _first_last(a) for a in re.split(r"\s+and\s+", text("author"), flags=re.I) if a.strip()
        ],
        "year": int(f["year"]) if f.get("year", "").strip().isdigit() else f.get("year"),
        "venue": venue,
    }
    if month in MONTHS:
        data["month"] = MONTHS.index(month) + 1
    elif month.isdigit():
        data["month"] = int(month)
    if f.get("eprint"):
        eprint = f["eprint"].strip().removeprefix("arXiv:").removeprefix("arxiv:")
        data["arxiv_id"] = re.sub(r"v\d+$", "", eprint)
    if f.get("url"):
        data["url"] = f["url"].strip()
    if f.get("keywords"):
        data["nodes"] = [k.strip() for k in f["keywords"].split(",") if k.strip()]
    return data


def _first_last(name: str) -> str:
    """'Gu, Yuxian' -> 'Yuxian Gu' (the knowledge base stores names given-name first)."""
    name = " ".join(name.split())
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        return f"{first} {last}".strip()
    return name


def from_bibtex(text: str) -> list[dict[str, Any]]:
    """Paper data from BibTeX text; raises BibtexError when blocks cannot be parsed."""
    library = parse_string(text)
    if library.failed_blocks:
        first = library.failed_blocks[0]
        key = getattr(first, "key", None)
        why = f"duplicate entry key {key!r}" if key else "it could not be parsed"
        raise BibtexError(
            f"{len(library.failed_blocks)} BibTeX block(s) rejected; the first, at line "
            f"{(first.start_line or 0) + 1}: {why}"
        )
    return [entry_to_data(e) for e in library.entries]
