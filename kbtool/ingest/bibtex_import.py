"""``kbtool import-bibtex``: add BibTeX entries as papers, skipping ones already present."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from kbtool.core.errors import KnowledgeBaseError, Problem, validation_message
from kbtool.core.loader import Records, check_references, load_for_import
from kbtool.core.model import Paper, Source
from kbtool.export.bibtex import from_bibtex
from kbtool.ingest.paper_io import normalize_title, write_paper


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
