"""Bibliographic facts from ``paper-metadata.jsonl``: authors, years, arXiv ids, survey refs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.ingest.titles import normalize_title


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


def _typed(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:  # noqa: ANN401
    value = raw.get(key)
    if value is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MetadataError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def _str_list(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = _typed(raw, key, list, where) or []
    if not all(isinstance(v, str) for v in value):
        raise MetadataError(f"{where}: field {key!r} must be a list of strings, got {value!r}")
    return list(value)


def _record(raw: object, number: int, where: str) -> MetaRecord:
    if not isinstance(raw, dict):
        raise MetadataError(f"{where}: not a JSON object")
    title = _typed(raw, "title", str, where)
    if not title or not title.strip():
        raise MetadataError(f"{where}: field 'title' is missing or empty")
    arxiv_id = _typed(raw, "arxiv_id", str, where) or None
    if arxiv_id is not None:
        arxiv_id = re.sub(r"v\d+$", "", arxiv_id.strip().removeprefix("arXiv:"))
        if not re.fullmatch(r"\d{4}\.\d{4,5}", arxiv_id):
            raise MetadataError(f"{where}: field 'arxiv_id' is not an arXiv id: {arxiv_id!r}")
    refs = _typed(raw, "survey_ref_numbers", list, where) or []
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in refs):
        raise MetadataError(f"{where}: field 'survey_ref_numbers' must be a list of integers")
    return MetaRecord(
        line=number,
        title=title,
        arxiv_id=arxiv_id,
        authors=_clean_authors(_str_list(raw, "authors", where)),
        authors_source=_typed(raw, "authors_source", str, where),
        year=_typed(raw, "year", int, where),
        venue=_typed(raw, "venue", str, where),
        survey_refs=tuple(refs),
        in_awesome_list=bool(raw.get("in_awesome_list")),
        title_variants=tuple(_str_list(raw, "title_variants", where)),
        note=_typed(raw, "note", str, where),
    )


def load_metadata(path: Path) -> MetadataIndex:
    """Read the JSON-lines metadata file into an index; MetadataError names file, line, field."""
    index = MetadataIndex()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{where}: not valid JSON ({exc.msg})") from exc
        record = _record(raw, number, where)
        index.records.append(record)
        if record.arxiv_id:
            index.by_arxiv.setdefault(record.arxiv_id, record)
        for title in record.titles:
            key = normalize_title(title)
            if key:
                index.by_title.setdefault(key, record)
    return index
