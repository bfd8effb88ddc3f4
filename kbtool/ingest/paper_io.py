"""Reading and writing paper files: stable field order, atomic writes, id generation."""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.core.atomic import write_text_atomic
from kbtool.core.errors import KnowledgeBaseError, Problem, validation_message
from kbtool.core.model import Paper
from kbtool.core.safe_yaml import dump_yaml

_STOPWORDS = {
    "a",
    "an",
    "the",
    "on",
    "of",
    "for",
    "to",
    "in",
    "and",
    "with",
    "from",
    "via",
    "by",
    "is",
    "are",
    "can",
    "do",
    "does",
    "be",
    "your",
    "you",
    "we",
    "our",
    "at",
    "as",
    "not",
    "all",
    "what",
    "which",
    "how",
    "when",
    "why",
    "into",
    "towards",
    "toward",
    "make",
    "makes",
}


def normalize_title(title: str) -> str:
    """Comparison key of a title: case-folded ASCII letters and digits only."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.casefold())


def similar_titles(a: str, b: str, threshold: float = 0.93) -> bool:
    """True for spelling variants of one title ('Consitutional AI' vs 'Constitutional AI')."""
    na, nb = normalize_title(a), normalize_title(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    if abs(len(na) - len(nb)) > max(3, len(na) // 10):
        return False
    return SequenceMatcher(None, na, nb).ratio() >= threshold


def _ascii_word(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.casefold())


def _title_words(title: str) -> list[str]:
    words = [_ascii_word(w) for w in re.split(r"[\s:\-/]+", title)]
    return [w for w in words if w and w not in _STOPWORDS]


def make_paper_id(authors: list[str], year: int, title: str, taken: set[str]) -> str:
    """A readable, unique id: first author's surname, year, first title keyword.

    'Gu, ..., 2023, MiniLLM: ...' -> 'gu2023minillm'. Without authors the first two title
    keywords are used ('alpaca2023aligning'). Collisions get a letter suffix (b, c, ...).
    """
    words = _title_words(title) or ["untitled"]
    surname = _ascii_word(authors[0].split()[-1]) if authors and authors[0].split() else ""
    base = f"{surname}{year}{words[0]}" if surname else f"{words[0]}{year}{''.join(words[1:2])}"
    base = base[:60]
    if base not in taken:
        return base
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"{base}{letter}" not in taken:
            return f"{base}{letter}"
    n = 2  # more than 25 collisions: numbered suffixes
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def build_paper(where: str, **data: Any) -> Paper:  # noqa: ANN401
    """A validated Paper; invalid source values become KnowledgeBaseError problems that name
    the source entry (``where``, e.g. ``list.md:line 12``) and the field."""
    try:
        return Paper.model_validate(data)
    except ValidationError as exc:
        raise KnowledgeBaseError(
            [
                Problem(
                    where,
                    ".".join(str(x) for x in e["loc"]) or "(entry)",
                    validation_message(e),
                )
                for e in exc.errors(include_url=False)
            ]
        ) from exc


def arxiv_year_month(arxiv_id: str) -> tuple[int, int]:
    """Year and month of first submission encoded in a new-style arXiv id (YYMM.NNNNN)."""
    return 2000 + int(arxiv_id[:2]), int(arxiv_id[2:4])


def paper_to_data(paper: Paper) -> dict[str, Any]:
    """Plain data of a paper in model field order, without empty provenance entries."""
    data = paper.model_dump(mode="json")
    data["source"] = {k: v for k, v in data["source"].items() if v not in (None, [], {})}
    for row in data["source"].get("summary_table", []):
        if not row.get("printed"):
            row.pop("printed", None)
    return data


def paper_path(root: Path, paper_id: str) -> Path:
    """Where a paper's YAML file lives."""
    return root / "papers" / f"{paper_id}.yaml"


def write_paper(root: Path, paper: Paper) -> bool:
    """Write ``paper`` atomically; return True when the file changed."""
    path = paper_path(root, paper.id)
    text = dump_yaml(paper_to_data(paper))
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True
