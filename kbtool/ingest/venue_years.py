"""The venue's own year of a paper from paper-metadata.jsonl: only DBLP records and
conference paper lists say it; the survey's reference text and paper indexes do not.

'ICLR 2024' for MiniLLM (arXiv 2023-06): the year comes from the proceedings title or the
conference list's code, and only when that venue is the paper's venue. Nothing is guessed.
"""

from __future__ import annotations

import re

from kbtool.ingest.metadata import MetaRecord
from kbtool.ingest.venues import normalize_venue

#: authors_source values whose records carry a venue year.
VENUE_YEAR_SOURCES = ("dblp", "papercopilot")
_CODE = re.compile(r"^[a-z]+(\d{4})$")


#: Stored venues that say less than a DBLP or conference-list record: a preprint, or the
#: proceedings series (PMLR) rather than the conference.
VAGUE_VENUES = ("arXiv", "Other", "PMLR")


def venue_and_year(record: MetaRecord, venue: str) -> tuple[str, int] | None:
    """The paper's venue and that venue's year according to ``record``: ``venue`` itself, or
    the record's venue where ``venue`` is vague (arXiv, PMLR); None when the record does not
    say or names another venue."""
    if record.authors_source not in VENUE_YEAR_SOURCES or not record.venue:
        return None
    theirs = normalize_venue(record.venue)
    if theirs in VAGUE_VENUES or (theirs != venue and venue not in VAGUE_VENUES):
        return None
    year = _year(record)
    return (theirs, year) if year is not None else None


def venue_year_from(record: MetaRecord, venue: str) -> int | None:
    """The year of ``venue`` according to ``record``, or None when the record does not say
    (not a DBLP or conference-list record, another venue, or years that disagree)."""
    found = venue_and_year(record, venue)
    return found[1] if found and found[0] == venue else None


def _year(record: MetaRecord) -> int | None:
    assert record.venue is not None
    raw = record.venue.strip().casefold()
    code = _CODE.fullmatch(raw)
    if code:  # a conference list's code: 'naacl2024'
        return int(code.group(1))
    printed = {int(y) for y in re.findall(r"\b(19\d\d|20[0-3]\d)\b", record.venue)}
    if record.authors_source == "dblp" and record.year is not None:
        return record.year if not printed or printed == {record.year} else None
    return printed.pop() if len(printed) == 1 else None
