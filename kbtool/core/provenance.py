"""Where placements and nodes come from: placement basis, node origin, first-version dates.

Queries and the site share these helpers so that 'basis', 'origin' and 'since' mean the same
thing everywhere.
"""

from __future__ import annotations

import re

from kbtool.core.model import Basis, Paper, TaxonomyNode

ORIGINS = ("survey", "kd-atlas")
SURVEY_ORIGIN = "survey"
BASES = tuple(b.value for b in Basis)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def node_origin(node: TaxonomyNode) -> str:
    """'survey' for the survey's own nodes, 'kd-atlas' for our extensions."""
    return str(node.origin)


def parse_month(value: str) -> tuple[int, int]:
    """'2024-03' -> (2024, 3); ValueError naming the expected form otherwise."""
    match = _MONTH.fullmatch(value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"since: expected a month as YYYY-MM (e.g. 2024-03), got {value!r}")
    return int(match.group(1)), int(match.group(2))


def first_version_month(paper: Paper) -> str | None:
    """'YYYY-MM' of the first version (the arXiv id's month when there is one), if known."""
    year, month = paper.first_version
    return f"{year:04d}-{month:02d}" if month else None


def dated_since(paper: Paper, since: tuple[int, int]) -> bool:
    """True when the paper's first version is in month ``since`` or later.

    A paper known only by its year counts from the year after ``since``'s year onwards
    (its month could be before ``since``): nothing is guessed.
    """
    year, month = paper.first_version
    if month is None:
        return year > since[0]
    return (year, month) >= since


def bases_of(paper: Paper) -> set[str]:
    """The bases of the paper's placements ('survey-list', 'crosswalk', 'reviewed')."""
    return {p.basis.value for p in paper.placements}


def check_basis(value: str) -> str:
    """``value`` if it is a placement basis, else KeyError listing the bases."""
    if value not in BASES:
        raise KeyError(f"unknown basis {value!r}; one of {', '.join(BASES)}")
    return value


def check_origin(value: str) -> str:
    """``value`` if it is a node origin, else KeyError listing the origins."""
    if value not in ORIGINS:
        raise KeyError(f"unknown origin {value!r}; one of {', '.join(ORIGINS)}")
    return value


#: The survey's list ends with papers of 2024-02 (the survey is arXiv 2402.13116).
NEW_SINCE = (2024, 3)
NEW_SINCE_TEXT = "2024-03"
_PREPRINT = ("arXiv", "Other")


def is_new_since_survey(paper: Paper) -> bool:
    """Dated 2024-03 or later and not from the survey (no survey-list placement, not cited)."""
    if paper.cited_by_survey or Basis.SURVEY_LIST.value in bases_of(paper):
        return False
    return dated_since(paper, NEW_SINCE)


def venue_label(paper: Paper) -> str:
    """'ICLR 2024 (arXiv 2023-06)': the venue with its own year, then the first version."""
    if paper.venue in _PREPRINT or paper.venue_year is None:
        return paper.venue
    first = first_version_month(paper) if paper.arxiv_id else None
    return f"{paper.venue} {paper.venue_year}" + (f" (arXiv {first})" if first else "")
