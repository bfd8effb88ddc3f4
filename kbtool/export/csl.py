"""CSL-JSON export of papers, for reference managers (Zotero, Mendeley) and the site."""

from __future__ import annotations

from typing import Any

from kbtool.core.model import Paper
from kbtool.export.bibtex import JOURNALS, VENUE_NOTE_TAIL
from kbtool.export.json_text import dumps_indented


def _csl_name(author: str) -> dict[str, str]:
    parts = author.rsplit(" ", 1)
    return {"family": parts[-1], "given": parts[0]} if len(parts) == 2 else {"literal": author}


def to_csl(paper: Paper) -> dict[str, Any]:
    """One CSL-JSON item."""
    date_parts = [paper.year, paper.month] if paper.month else [paper.year]
    preprint = paper.venue in ("arXiv", "Other")
    item: dict[str, Any] = {
        "id": paper.id,
        "type": "article-journal"
        if paper.venue in JOURNALS
        else ("article" if preprint else "paper-conference"),
        "title": paper.title,
        "author": [_csl_name(a) for a in paper.authors],
        "issued": {"date-parts": [date_parts]},
        "container-title": paper.venue,
    }
    if not preprint and paper.venue_year is not None:
        # The venue's own year is the issued date; the first version is the original date.
        item["issued"] = {"date-parts": [[paper.venue_year]]}
        item["original-date"] = {"date-parts": [date_parts]}
    elif not preprint:
        # Venue year unknown: cite the first version and name the venue, never guess a year.
        item["type"] = "article"
        item["container-title"] = "arXiv" if paper.arxiv_id else ""
        item["note"] = f"Venue: {paper.venue}{VENUE_NOTE_TAIL}"
    if paper.url:
        item["URL"] = paper.url
    if paper.arxiv_id:
        item["number"] = f"arXiv:{paper.arxiv_id}"
    return item


def to_csl_json(papers: list[Paper]) -> str:
    """CSL-JSON text (a list of items) of ``papers``."""
    return dumps_indented([to_csl(p) for p in papers])
