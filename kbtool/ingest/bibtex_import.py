"""``kbtool import-bibtex``: read BibTeX entries (bibtexparser v2) and add them as papers,
skipping ones already present. The inverse of :mod:`kbtool.export.bibtex`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bibtexparser import model
from bibtexparser.entrypoint import parse_string
from pydantic import ValidationError

from kbtool.core.errors import KnowledgeBaseError, Problem, validation_message
from kbtool.core.loader import Records, check_references, load_for_import
from kbtool.core.model import Paper, Source
from kbtool.export.bibtex import LATEX_ESCAPES, MONTHS, VENUE_NOTE_TAIL
from kbtool.ingest.paper_io import write_paper
from kbtool.ingest.titles import normalize_title

_UNESCAPE = {v: k for k, v in LATEX_ESCAPES.items()}


class BibtexError(ValueError):
    """The BibTeX text could not be read as papers."""


def unescape_latex(text: str) -> str:
    """Inverse of ``escape_latex``."""
    pattern = "|".join(re.escape(k) for k in sorted(_UNESCAPE, key=len, reverse=True))
    return re.sub(pattern, lambda m: _UNESCAPE[m.group(0)], text)


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

    note = re.fullmatch(r"Venue: (.+)" + re.escape(VENUE_NOTE_TAIL), text("note"))
    venue = (
        (note.group(1) if note else "")
        or text("journal")
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
    origdate = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", f.get("origdate", "").strip())
    if origdate:  # year is the venue's; origdate the first version's
        data["venue_year"], data["year"] = data["year"], int(origdate.group(1))
        month = origdate.group(2) or ""
        month = str(int(month)) if month else ""
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


@dataclass
class BibtexImportReport:
    """Papers added and entries skipped because they already exist."""

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def import_bibtex(root: Path, text: str, *, source: str) -> BibtexImportReport:
    """Validate every entry first; write nothing unless all entries are valid."""
    records = load_for_import(root)
    ids = {p.id for p in records.papers}
    arxiv = {p.arxiv_id for p in records.papers if p.arxiv_id}
    titles = {normalize_title(p.title) for p in records.papers} - {""}
    report = BibtexImportReport()
    new: list[Paper] = []
    problems: list[Problem] = []
    for data in from_bibtex(text):
        key = str(data.get("id"))
        if (
            key in ids
            or data.get("arxiv_id") in arxiv
            or normalize_title(str(data.get("title", ""))) in titles
        ):
            report.skipped.append(key)
            continue
        data["source"] = Source(notes=[f"imported from BibTeX {Path(source).name}"]).model_dump()
        try:
            new.append(Paper.model_validate(data))
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                loc = ".".join(str(x) for x in e["loc"]) or "(entry)"
                problems.append(Problem(source, f"{key}.{loc}", validation_message(e)))
    problems += _reference_problems(records, new, source)
    if problems:
        raise KnowledgeBaseError(problems)
    for paper in new:
        write_paper(root, paper)
        report.added.append(paper.id)
    return report


def _reference_problems(records: Records, new: list[Paper], source: str) -> list[Problem]:
    """The loader's cross-file checks (known nodes and methods, unique ids and arXiv ids) run
    on the knowledge base as it would be after the import, reported against the BibTeX file."""
    after = Records(
        root=records.root,
        nodes=records.nodes,
        methods=records.methods,
        papers=[*records.papers, *new],
    )
    check_references(after, {})
    new_files = {f"papers/{p.id}.yaml": p.id for p in new}
    seen_ids: set[str] = set()
    problems = []
    for paper in new:
        if paper.id in seen_ids:
            problems.append(Problem(source, f"{paper.id}.id", "entry key used twice"))
        seen_ids.add(paper.id)
    for problem in after.problems:
        if problem.file in new_files:
            key = new_files[problem.file]
            problems.append(Problem(source, f"{key}.{problem.field}", problem.message))
    return problems
