"""``kbtool import-metadata``: fill authors and arXiv ids, add the survey's other cited works.

Idempotent: a second run on the same file changes nothing. Works cited by the survey but
absent from the list become papers with empty ``nodes`` and ``cited_by_survey: true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kbtool.core.loader import load_for_import
from kbtool.core.model import Paper, Source
from kbtool.ingest.metadata import MetadataIndex, MetaRecord
from kbtool.ingest.paper_ids import arxiv_year_month, make_paper_id
from kbtool.ingest.paper_io import build_paper, write_paper
from kbtool.ingest.titles import normalize_title
from kbtool.ingest.venue_years import venue_and_year, venue_year_from
from kbtool.ingest.venues import normalize_venue


@dataclass
class MetadataReport:
    """What the metadata import changed and what it could not use."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _display_title(title: str) -> str:
    """The reference list lower-cases titles; restore a capital first letter only."""
    return title[:1].upper() + title[1:] if title[:1].islower() else title


def _find(papers: dict[str, Paper], record: MetaRecord) -> Paper | None:
    keys = {normalize_title(t) for t in record.titles} - {""}
    for paper in papers.values():
        if record.arxiv_id and paper.arxiv_id == record.arxiv_id:
            return paper
    for paper in papers.values():
        if normalize_title(paper.title) in keys:
            return paper
    return None


def _year_month(record: MetaRecord) -> tuple[int | None, int | None]:
    if record.arxiv_id:
        return arxiv_year_month(record.arxiv_id)
    return record.year or record.year_from_venue(), None


def _venue(record: MetaRecord) -> str:
    venue = normalize_venue(record.venue)
    return "arXiv" if venue == "Other" and record.arxiv_id else venue


def _update(paper: Paper, record: MetaRecord, arxiv_free: bool) -> Paper:
    changes: dict[str, object] = {}
    source_changes: dict[str, object] = {}
    if not paper.authors and record.authors:
        changes["authors"] = list(record.authors)
        if paper.source.metadata is None:
            source_changes["metadata"] = record.authors_source
    if paper.arxiv_id is None and record.arxiv_id and arxiv_free:
        changes["arxiv_id"] = record.arxiv_id
        if paper.url is None:
            changes["url"] = f"https://arxiv.org/abs/{record.arxiv_id}"
    found = venue_and_year(record, paper.venue)
    if paper.venue_year is None and found is not None:
        changes["venue"], changes["venue_year"] = found
        source_changes["venue_year"] = record.authors_source
        if found[0] != paper.venue:
            note = f"venue {found[0]} from {record.authors_source} (was {paper.venue})"
            source_changes["notes"] = [*paper.source.notes, note]
    refs = sorted(set(paper.source.survey_refs) | set(record.survey_refs))
    if refs != paper.source.survey_refs:
        source_changes["survey_refs"] = refs
    if record.survey_refs and not paper.cited_by_survey:
        changes["cited_by_survey"] = True
    if source_changes:
        changes["source"] = paper.source.model_copy(update=source_changes)
    return paper.model_copy(update=changes) if changes else paper


def import_metadata(
    root: Path, meta: MetadataIndex, meta_source: str = "metadata"
) -> MetadataReport:
    """Apply the metadata records to the papers under ``root``."""
    records = load_for_import(root)
    papers = {p.id: p for p in records.papers}
    report = MetadataReport()
    for record in meta.records:
        paper = _find(papers, record)
        if paper is not None:
            used = {p.arxiv_id for p in papers.values() if p.arxiv_id}
            new = _update(paper, record, arxiv_free=record.arxiv_id not in used)
            if new != paper:
                papers[paper.id] = build_paper(f"{meta_source}:{record.line}", **new.model_dump())
                if paper.id not in report.updated:
                    report.updated.append(paper.id)
            continue
        if not record.survey_refs:
            if record.in_awesome_list:
                report.notes.append(f"line {record.line}: list paper {record.title!r} not found")
            continue
        year, month = _year_month(record)
        if year is None:
            report.notes.append(f"line {record.line}: {record.title!r} has no year; not added")
            continue
        title = _display_title(record.title)
        paper_id = make_paper_id(list(record.authors), year, title, set(papers))
        papers[paper_id] = build_paper(
            f"{meta_source}:{record.line}",
            id=paper_id,
            title=title,
            authors=list(record.authors),
            year=year,
            month=month,
            venue=_venue(record),
            venue_year=venue_year_from(record, _venue(record)),
            arxiv_id=record.arxiv_id,
            url=f"https://arxiv.org/abs/{record.arxiv_id}" if record.arxiv_id else None,
            cited_by_survey=True,
            source=Source(
                metadata=record.authors_source if record.authors else None,
                survey_refs=list(record.survey_refs),
                venue_year=(
                    record.authors_source if venue_year_from(record, _venue(record)) else None
                ),
            ),
        )
        report.added.append(paper_id)
    for paper_id in [*report.added, *report.updated]:
        write_paper(root, papers[paper_id])
    return report
