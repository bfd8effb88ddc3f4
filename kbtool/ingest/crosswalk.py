"""The crosswalk (``taxonomy/crosswalk.yaml``: curated-list sections -> nodes) and the review
file (``taxonomy/reviews.yaml``: placements chosen by a person), read and checked.

Both are data that the post-survey importer applies; here they are validated on their own
(known node ids, one entry per section or paper) and against a source file (every section
mapped or listed as unmapped, every review about a paper of the source).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from kbtool.core.errors import Problem, validation_message
from kbtool.core.model import REPO_PATTERN, ArxivId, NonEmpty, Slug
from kbtool.core.safe_yaml import YamlError, read_yaml

Repo = Annotated[str, StringConstraints(pattern=REPO_PATTERN)]
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SectionMapping(_Strict):
    """One section heading of a list and the nodes its papers go to (or why none)."""

    section: NonEmpty
    nodes: list[Slug] = Field(default_factory=list)
    unmapped: NonEmpty | None = None

    @model_validator(mode="after")
    def _nodes_xor_unmapped(self) -> SectionMapping:
        if bool(self.nodes) == (self.unmapped is not None):
            raise ValueError("give either a non-empty `nodes` list or an `unmapped` reason")
        return self


class ListMapping(_Strict):
    """The sections of one curated list (``owner/name``)."""

    repo: Repo
    sections: list[SectionMapping] = Field(min_length=1)


class Crosswalk(_Strict):
    """The whole ``crosswalk.yaml``."""

    lists: list[ListMapping]

    def nodes_of(self, repo: str, section: str) -> list[str] | None:
        """Nodes mapped from (repo, section); [] when unmapped on purpose; None if unknown."""
        for entry in self.lists:
            if entry.repo == repo:
                for mapping in entry.sections:
                    if mapping.section == section:
                        return list(mapping.nodes)
        return None


class Review(_Strict):
    """Placements of one paper chosen by a reviewer (``nodes``), or why it is dropped."""

    arxiv_id: ArxivId
    title: NonEmpty | None = None
    nodes: list[Slug] = Field(default_factory=list)
    shortlist: list[Slug] = Field(default_factory=list)
    note: NonEmpty | None = None
    drop: NonEmpty | None = None

    @model_validator(mode="after")
    def _nodes_xor_drop(self) -> Review:
        if bool(self.nodes) == (self.drop is not None):
            raise ValueError("give either a non-empty `nodes` list or a `drop` reason")
        return self


class Reviews(_Strict):
    """The whole ``reviews.yaml``."""

    reviews: list[Review] = Field(default_factory=list)

    def by_arxiv(self) -> dict[str, Review]:
        """Reviews keyed by arXiv id."""
        return {r.arxiv_id: r for r in self.reviews}


def _load(path: Path, label: str, model: type[M], problems: list[Problem]) -> M | None:
    try:
        data = read_yaml(path)
    except YamlError as exc:
        problems.append(Problem(label, "(file)", str(exc)))
        return None
    except OSError as exc:
        problems.append(Problem(label, "(file)", exc.strerror or "cannot be read"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = ".".join(str(x) for x in err["loc"]) or "(file)"
            problems.append(Problem(label, field, validation_message(err)))
        return None


def load_crosswalk(
    path: Path, node_ids: Iterable[str], problems: list[Problem]
) -> Crosswalk | None:
    """Read and check the crosswalk: schema, known nodes, each (repo, section) once."""
    label = path.as_posix()
    crosswalk = _load(path, label, Crosswalk, problems)
    if crosswalk is None:
        return None
    known = set(node_ids)
    seen: set[tuple[str, str]] = set()
    repos: set[str] = set()
    for i, entry in enumerate(crosswalk.lists):
        if entry.repo in repos:
            problems.append(Problem(label, f"lists.{i}.repo", f"{entry.repo} is listed twice"))
        repos.add(entry.repo)
        for j, mapping in enumerate(entry.sections):
            where = f"lists.{i}.sections.{j}"
            if (entry.repo, mapping.section) in seen:
                problems.append(
                    Problem(label, f"{where}.section", f"{mapping.section!r} appears twice")
                )
            seen.add((entry.repo, mapping.section))
            for node in mapping.nodes:
                if node not in known:
                    problems.append(Problem(label, f"{where}.nodes", f"unknown node {node!r}"))
    return crosswalk


def load_reviews(path: Path, node_ids: Iterable[str], problems: list[Problem]) -> Reviews | None:
    """Read and check the reviews: schema, known nodes, one review per arXiv id."""
    label = path.as_posix()
    reviews = _load(path, label, Reviews, problems)
    if reviews is None:
        return None
    known = set(node_ids)
    seen: set[str] = set()
    for i, review in enumerate(reviews.reviews):
        where = f"reviews.{i}"
        if review.arxiv_id in seen:
            problems.append(
                Problem(label, f"{where}.arxiv_id", f"{review.arxiv_id} reviewed twice")
            )
        seen.add(review.arxiv_id)
        for name, nodes in (("nodes", review.nodes), ("shortlist", review.shortlist)):
            for node in nodes:
                if node not in known:
                    problems.append(Problem(label, f"{where}.{name}", f"unknown node {node!r}"))
    return reviews


def check_coverage(
    crosswalk: Crosswalk,
    crosswalk_label: str,
    sections: Iterable[tuple[str, str, str]],
    problems: list[Problem],
) -> None:
    """Every (repo, section) of the source, given as (where, repo, section), is in the
    crosswalk (mapped or unmapped on purpose); each missing pair is reported once."""
    missing: dict[tuple[str, str], str] = {}
    for where, repo, section in sections:
        if crosswalk.nodes_of(repo, section) is None:
            missing.setdefault((repo, section), where)
    for (repo, section), where in missing.items():
        problems.append(
            Problem(
                crosswalk_label,
                "lists",
                f"section {section!r} of {repo} (first at {where}) is neither mapped nor "
                "listed as unmapped",
            )
        )


def check_reviews_known(
    reviews: Reviews, reviews_label: str, arxiv_ids: set[str], problems: list[Problem]
) -> None:
    """Every review is about a paper of the source."""
    for i, review in enumerate(reviews.reviews):
        if review.arxiv_id not in arxiv_ids:
            problems.append(
                Problem(
                    reviews_label,
                    f"reviews.{i}.arxiv_id",
                    f"{review.arxiv_id} is not a paper of the source file",
                )
            )
