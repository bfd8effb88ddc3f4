"""Bibliographic facts from ``paper-metadata.jsonl``: authors, years, arXiv ids, survey refs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kbtool.paper_io import normalize_title


@dataclass(frozen=True)
class MetaRecord:
    """One line of the metadata file."""

    line: int
    title: str
    arxiv_id: str | None
    authors: tuple[str, ...]
    authors_source: str | None
    year: int | None
    venue: str | None
    survey_refs: tuple[int, ...]
    in_awesome_list: bool
    title_variants: tuple[str, ...] = ()
    note: str | None = None

    @property
    def titles(self) -> tuple[str, ...]:
        """The title and its known variants."""
        return (self.title, *self.title_variants)

    def year_from_venue(self) -> int | None:
        """A year printed in the raw venue string ('..., 2023.'), when the record has none."""
        match = re.findall(r"\b(19\d\d|20[0-3]\d)\b", self.venue or "")
        return int(match[-1]) if match else None


@dataclass
class MetadataIndex:
    """Metadata records indexed by arXiv id and by normalised title (variants included)."""

    records: list[MetaRecord] = field(default_factory=list)
    by_arxiv: dict[str, MetaRecord] = field(default_factory=dict)
    by_title: dict[str, MetaRecord] = field(default_factory=dict)

    def find(self, arxiv_id: str | None, title: str) -> MetaRecord | None:
        """The record of a paper, by arXiv id when it agrees with the title, else by title."""
        key = normalize_title(title)
        if arxiv_id and arxiv_id in self.by_arxiv:
            record = self.by_arxiv[arxiv_id]
            if any(normalize_title(t) == key for t in record.titles) or key not in self.by_title:
                return record
        return self.by_title.get(key)


def _clean_authors(names: list[str]) -> tuple[str, ...]:
    """Split names joined by 'and' and drop 'et al.' left by the reference list's transcription."""
    out: list[str] = []
    for name in names:
        for part in re.split(r"\s*\band\s+", str(name)):
            part = part.strip().rstrip(",")
            if part and part.casefold() not in ("et al.", "et al", "others"):
                out.append(part)
    return tuple(out)


class MetadataError(ValueError):
    """A line of the metadata file is not the expected JSON object."""


def load_metadata(path: Path) -> MetadataIndex:
    """Read the JSON-lines metadata file into an index."""
    index = MetadataIndex()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            record = MetaRecord(
                line=number,
                title=str(raw["title"]),
                arxiv_id=raw.get("arxiv_id") or None,
                authors=_clean_authors(raw.get("authors") or []),
                authors_source=raw.get("authors_source"),
                year=raw.get("year"),
                venue=raw.get("venue"),
                survey_refs=tuple(raw.get("survey_ref_numbers") or ()),
                in_awesome_list=bool(raw.get("in_awesome_list")),
                title_variants=tuple(raw.get("title_variants") or ()),
                note=raw.get("note"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise MetadataError(f"{path}:{number}: not a metadata record ({exc})") from exc
        index.records.append(record)
        if record.arxiv_id:
            index.by_arxiv.setdefault(record.arxiv_id, record)
        for title in record.titles:
            index.by_title.setdefault(normalize_title(title), record)
    return index
