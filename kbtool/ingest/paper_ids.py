"""Readable, unique paper ids ('gu2023minillm') and the dates encoded in arXiv ids."""

from __future__ import annotations

import re

from kbtool.ingest.titles import normalize_title

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


def _title_words(title: str) -> list[str]:
    """Keywords of a title for ids: LaTeX commands and one-letter words are not keywords
    ('$\\boldsymbol{f}$-OPD: ...' -> ['opd', ...])."""
    plain = re.sub(r"\\[A-Za-z]+", " ", title)
    words = [normalize_title(w) for w in re.split(r"[\s:\-/]+", plain)]
    return [w for w in words if len(w) > 1 and w not in _STOPWORDS]


def make_paper_id(authors: list[str], year: int, title: str, taken: set[str]) -> str:
    """A readable, unique id: first author's surname, year, first title keyword.

    'Gu, ..., 2023, MiniLLM: ...' -> 'gu2023minillm'. Without authors the first two title
    keywords are used ('alpaca2023aligning'). Collisions get a letter suffix (b, c, ...).
    """
    words = _title_words(title) or ["untitled"]
    surname = normalize_title(authors[0].split()[-1]) if authors and authors[0].split() else ""
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


def arxiv_year_month(arxiv_id: str) -> tuple[int, int]:
    """Year and month of first submission encoded in a new-style arXiv id (YYMM.NNNNN)."""
    return 2000 + int(arxiv_id[:2]), int(arxiv_id[2:4])
