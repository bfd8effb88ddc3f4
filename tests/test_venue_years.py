"""Issue 14, point 7: the venue's own year comes only from DBLP or conference-list records,
never from a guess; the bundled KB carries it (MiniLLM is ICLR 2024, arXiv 2023-06)."""

from __future__ import annotations

from typing import Any

import pytest

import kbtool
from kbtool.ingest.metadata import MetaRecord
from kbtool.ingest.venue_years import venue_and_year, venue_year_from

ICLR_2024 = (
    "The Twelfth International Conference on Learning Representations, {ICLR} 2024, Vienna, "
    "Austria, May 7-11, 2024"
)


def record(**changes: Any) -> MetaRecord:  # noqa: ANN401
    base: dict[str, Any] = {
        "line": 1,
        "title": "T",
        "arxiv_id": "2306.08543",
        "authors": ("A B",),
        "authors_source": "dblp",
        "year": 2024,
        "venue": ICLR_2024,
        "survey_refs": (),
        "in_awesome_list": True,
    }
    return MetaRecord(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "venue", "expected"),
    [
        ({}, "ICLR", ("ICLR", 2024)),
        # a conference list's code gives the year; its `year` field is the arXiv year
        (
            {"authors_source": "papercopilot", "venue": "naacl2024", "year": 2023},
            "NAACL",
            ("NAACL", 2024),
        ),
        # a vague stored venue takes DBLP's venue
        ({}, "arXiv", ("ICLR", 2024)),
        (
            {"venue": "International Conference on Machine Learning, {ICML} 2023", "year": 2023},
            "PMLR",
            ("ICML", 2023),
        ),
        # another venue than the stored one: no year rather than a wrong one
        ({}, "NeurIPS", None),
        # the survey's reference text and paper indexes do not give venue years
        ({"authors_source": "survey (initials)", "venue": "ICLR, 2024."}, "ICLR", None),
        ({"authors_source": "llm-bible"}, "ICLR", None),
        # DBLP's year disagreeing with the printed proceedings year: unknown
        ({"year": 2023}, "ICLR", None),
        ({"venue": None}, "ICLR", None),
    ],
)
def test_venue_and_year(changes: dict[str, Any], venue: str, expected: object) -> None:
    assert venue_and_year(record(**changes), venue) == expected


def test_venue_year_from_keeps_the_stored_venue() -> None:
    assert venue_year_from(record(), "ICLR") == 2024
    assert venue_year_from(record(), "arXiv") is None


def test_bundled_kb_has_venue_years_that_differ_from_the_arxiv_year() -> None:
    kb = kbtool.load()
    minillm = kb.papers["gu2023minillm"]
    assert (minillm.venue, minillm.venue_year, minillm.year) == ("ICLR", 2024, 2023)
    assert minillm.source.venue_year == "dblp"
    differing = [p for p in kb.papers.values() if p.venue_year and p.venue_year != p.year]
    assert len(differing) >= 30
    # Every venue year names where it came from: a metadata source for the survey's papers,
    # or the venue string of the post-survey list (which states the year).
    post_survey = "post-survey-papers.jsonl venue"
    assert all(p.source.venue_year in ("dblp", "papercopilot", post_survey) for p in differing)
    listed = [p for p in differing if p.source.venue_year == post_survey]
    assert listed, "the post-survey import gave no venue year that differs from the arXiv year"
    for paper in listed:
        assert paper.source.post_survey is not None
        # The list writes the year in full or in short ("ICLR 2025", "COLING'25").
        assert str(paper.venue_year)[2:] in (paper.source.post_survey.venue or "")
