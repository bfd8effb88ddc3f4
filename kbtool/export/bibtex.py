"""BibTeX export of papers with bibtexparser v2.

``@misc`` with ``eprint``/``archivePrefix`` for arXiv-only papers, ``@inproceedings`` for
conference papers, ``@article`` for journals, both with the venue's own year (the first
version's date in ``origdate``); a venue paper whose venue year is unknown is an ``@misc`` of its
first version with the venue in a note. Titles keep their case (outer braces) and LaTeX
specials are escaped. :mod:`kbtool.ingest.bibtex_import` reads such entries back (round trip).
"""

from __future__ import annotations

from bibtexparser import model
from bibtexparser.entrypoint import write_string
from bibtexparser.library import Library
from bibtexparser.middlewares import default_unparse_stack

from kbtool.core.model import Paper

JOURNALS = {"TACL", "TMLR", "JMLR", "PNAS", "IJCV", "Nature"}
VENUE_NOTE_TAIL = " (venue year not known; first version cited)"
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
LATEX_ESCAPES = {
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


def escape_latex(text: str) -> str:
    """Escape characters that are special in BibTeX/LaTeX."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def _entry(paper: Paper) -> model.Entry:
    fields: list[tuple[str, str]] = [("title", "{" + escape_latex(paper.title) + "}")]
    if paper.authors:
        fields.append(("author", " and ".join(escape_latex(a) for a in paper.authors)))
    preprint = paper.venue in ("arXiv", "Other") or not paper.venue
    if paper.venue_year is not None and not preprint:
        # The venue's own year; the first-version date moves to biblatex's origdate.
        fields.append(("year", str(paper.venue_year)))
        first = f"{paper.year}-{paper.month:02d}" if paper.month else str(paper.year)
        fields.append(("origdate", first))
    else:
        fields.append(("year", str(paper.year)))
        if paper.month:
            fields.append(("month", MONTHS[paper.month - 1]))
    if preprint:
        entry_type = "misc"
        fields.append(("howpublished", paper.venue))
    elif paper.venue_year is None:
        # A venue paper whose venue year no source gives: cite the first version, name the
        # venue in a note, never guess its year.
        entry_type = "misc"
        if paper.arxiv_id:
            fields.append(("howpublished", "arXiv"))
        fields.append(("note", f"Venue: {escape_latex(paper.venue)}{VENUE_NOTE_TAIL}"))
    elif paper.venue in JOURNALS:
        entry_type = "article"
        fields.append(("journal", escape_latex(paper.venue)))
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
    """BibTeX text of ``papers`` in the given order.

    The entries are built afresh for this call and dropped after it, so the unparse stack may
    modify them in place; the default stack deep-copies every block first, which is slow for
    large libraries (and bibtexparser warns about it).
    """
    library = Library([_entry(p) for p in papers])
    return str(write_string(library, unparse_stack=default_unparse_stack(True)))
