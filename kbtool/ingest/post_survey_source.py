"""Read the post-survey source format (post-survey-papers.jsonl): one paper a JSON line.

Every line is checked field by field; problems name the file, the line and the field, and
all of them are collected before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbtool.core.errors import Problem
from kbtool.core.model import ARXIV_ID_PATTERN, REPO_PATTERN, URL_PATTERN

_REQUIRED = (
    "title",
    "arxiv_id",
    "date",
    "authors",
    "venue",
    "code",
    "list_sections",
    "verified_by",
)
_KNOWN = {*_REQUIRED, "authors_truncated"}
_YEAR = re.compile(r"(?<!\d)(20\d\d)(?!\d)|'(\d\d)(?!\d)")
_PARENS = re.compile(r"\([^)]*\)")
_FINDINGS_SUFFIX = re.compile(r"[-\s]+findings$", re.IGNORECASE)
_TRACK_SUFFIX = re.compile(r"\s+(main|long papers|short papers)$", re.IGNORECASE)
#: Joint venues that the general normaliser would fold into one of their parts.
_JOINT = {"lrec-coling": "LREC-COLING"}


@dataclass(frozen=True)
class ListedSection:
    """One ``{repo, commit, section}`` entry of a source line."""

    repo: str
    commit: str
    section: str


@dataclass(frozen=True)
class SourceRecord:
    """One validated line of the source."""

    line: int
    title: str
    arxiv_id: str
    date: str
    authors: tuple[str, ...]
    authors_truncated: bool
    venue: str | None
    code: tuple[str, ...]
    sections: tuple[ListedSection, ...]
    verified_by: str

    @property
    def year_month(self) -> tuple[int, int]:
        """Year and month of the first arXiv version (from ``date``)."""
        year, month = self.date.split("-")
        return int(year), int(month)


def split_venue(raw: str) -> tuple[str, int | None]:
    """A printed venue as (normalised venue, year or None): "ACL'24" -> ('ACL', 2024),
    'EMNLP2024-findings' -> ('Findings of EMNLP', 2024), 'NeurIPS 2025 (poster)' -> ('NeurIPS',
    2025). The year is only what the string prints; nothing is inferred."""
    from kbtool.ingest.venues import normalize_venue

    text = " ".join(_PARENS.sub(" ", raw).split())
    years = [
        int(m.group(1)) if m.group(1) else 2000 + int(m.group(2)) for m in _YEAR.finditer(text)
    ]
    rest = " ".join(_YEAR.sub(" ", text).split()).strip(" -,")
    rest = _TRACK_SUFFIX.sub("", rest)
    if _FINDINGS_SUFFIX.search(rest):
        rest = "Findings of " + _FINDINGS_SUFFIX.sub("", rest)
    venue = _JOINT.get(rest.casefold()) or normalize_venue(rest or raw)
    return venue, (years[0] if len(set(years)) == 1 else None)


class _Line:
    """Field checks of one line; problems accumulate in ``problems``."""

    def __init__(self, raw: dict[str, Any], where: str, problems: list[Problem]) -> None:
        self.raw, self.where, self.problems = raw, where, problems

    def bad(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.where, field, message))

    def text(self, field: str, pattern: str | None = None, optional: bool = False) -> str | None:
        value = self.raw.get(field)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(field, "must be a non-empty text string")
            return None
        if pattern and not re.fullmatch(pattern.strip("^$"), value):
            self.bad(field, f"malformed value {value!r}")
            return None
        return value.strip()

    def texts(self, field: str, pattern: str | None = None) -> tuple[str, ...]:
        value = self.raw.get(field)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.bad(field, "must be a list of non-empty text strings")
            return ()
        bad = [v for v in value if pattern and not re.fullmatch(pattern.strip("^$"), v)]
        if bad:
            self.bad(field, f"malformed value {bad[0]!r}")
        return tuple(v.strip() for v in value)

    def sections(self) -> tuple[ListedSection, ...]:
        value = self.raw.get("list_sections")
        if not isinstance(value, list):
            self.bad("list_sections", "must be a list")
            return ()
        out: list[ListedSection] = []
        for i, item in enumerate(value):
            field = f"list_sections[{i}]"
            if not isinstance(item, dict) or set(item) != {"repo", "commit", "section"}:
                self.bad(field, "must be an object with exactly repo, commit and section")
                continue
            sub = _Line(item, self.where, self.problems)
            repo = sub.text("repo", REPO_PATTERN)
            commit = sub.text("commit", r"^[0-9a-f]{7,40}$")
            section = sub.text("section")
            if repo and commit and section:
                out.append(ListedSection(repo, commit, section))
        return tuple(out)


def _record(raw: object, number: int, where: str, problems: list[Problem]) -> SourceRecord | None:
    if not isinstance(raw, dict):
        problems.append(Problem(where, "(line)", "not a JSON object"))
        return None
    before = len(problems)
    for name in _REQUIRED:
        if name not in raw:
            problems.append(Problem(where, name, "required field is missing"))
    for name in sorted(set(raw) - _KNOWN):
        problems.append(Problem(where, name, "unknown field"))
    if len(problems) > before:
        return None
    line = _Line(raw, where, problems)
    title = line.text("title")
    arxiv_id = line.text("arxiv_id", ARXIV_ID_PATTERN)
    date = line.text("date", r"^20\d\d-(0[1-9]|1[0-2])$")
    if arxiv_id and date and date != f"20{arxiv_id[:2]}-{arxiv_id[2:4]}":
        line.bad("date", f"{date} is not the month of arXiv id {arxiv_id}")
    truncated = raw.get("authors_truncated", False)
    if not isinstance(truncated, bool):
        line.bad("authors_truncated", "must be true or false")
    record = SourceRecord(
        line=number,
        title=title or "",
        arxiv_id=arxiv_id or "",
        date=date or "",
        authors=line.texts("authors"),
        authors_truncated=bool(truncated),
        venue=line.text("venue", optional=True),
        code=line.texts("code", URL_PATTERN),
        sections=line.sections(),
        verified_by=(
            "list" if raw.get("verified_by") == "list" else line.text("verified_by", URL_PATTERN)
        )
        or "",
    )
    return None if len(problems) > before else record


def read_source(path: Path, label: str | None = None) -> tuple[list[SourceRecord], list[Problem]]:
    """Every line of the source file, validated; (records, problems)."""
    name = label or path.name
    records: list[SourceRecord] = []
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [Problem(name, "(file)", f"not valid UTF-8 (byte {exc.start})")]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(where, "(line)", f"not valid JSON ({exc.msg})"))
            continue
        record = _record(raw, number, where, problems)
        if record is not None:
            records.append(record)
    return records, problems
