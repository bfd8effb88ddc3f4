"""Typed model of the knowledge base: taxonomy nodes, method nodes and papers.

Every YAML file under ``taxonomy/`` and ``papers/`` is validated against these pydantic
models (``extra="forbid"``, so a misspelt field is an error rather than silently ignored).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kbtool.core.taxonomy import ELICITATION_PARENT, OBJECTIVE_PARENT, bundled_vocabulary

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
PAPER_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ARXIV_ID_PATTERN = r"^\d{4}\.\d{4,5}$"
URL_PATTERN = r"^https?://[^\s<>\"']+$"
LOSS_PATTERN = r"^reference_impls(?:\.[A-Za-z_][A-Za-z0-9_]*)+$"
MIN_YEAR = 1990
MAX_YEAR = 2030

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
PaperId = Annotated[str, StringConstraints(pattern=PAPER_ID_PATTERN, max_length=80)]
ArxivId = Annotated[str, StringConstraints(pattern=ARXIV_ID_PATTERN)]
Url = Annotated[str, StringConstraints(pattern=URL_PATTERN, max_length=2000)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
Year = Annotated[int, Field(ge=MIN_YEAR, le=MAX_YEAR)]


class _Strict(BaseModel):
    """Base for every stored record: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TeacherAccess(StrEnum):
    """What a method needs from the teacher: its text only, or its internals."""

    BLACK_BOX = "black-box"
    WHITE_BOX = "white-box"


class Role(StrEnum):
    """The survey's three roles of KD in the era of LLMs."""

    ADVANCING_SMALL_MODELS = "advancing-small-models"
    COMPRESSION = "compression"
    SELF_IMPROVEMENT = "self-improvement"


class TaxonomyNode(_Strict):
    """One heading of the survey's taxonomy (a pillar, a group or a leaf)."""

    id: Slug
    name: NonEmpty
    parent: Slug | None = None
    description: NonEmpty
    order: int = Field(ge=0)


class Taxonomy(_Strict):
    """The whole tree as stored in ``taxonomy/nodes.yaml``."""

    nodes: list[TaxonomyNode]


class Reduction(_Strict):
    """A statement that this method's loss contains another one as a special case."""

    method: Slug
    when: NonEmpty = Field(description="The parameter setting, e.g. 'beta = 0'.")


class Method(_Strict):
    """A named KD technique and the objective it optimises."""

    id: Slug
    name: NonEmpty
    nodes: list[Slug] = Field(min_length=1, description="Taxonomy nodes it belongs to.")
    papers: list[PaperId] = Field(default_factory=list, description="Introducing paper ids.")
    description: NonEmpty
    teacher_access: TeacherAccess
    same_tokenizer_required: bool
    on_policy: bool
    formula: NonEmpty = Field(description="LaTeX of the objective (without $ delimiters).")
    loss: Annotated[str, StringConstraints(pattern=LOSS_PATTERN)] | None = Field(
        default=None, description="Dotted name of the reference implementation."
    )
    generalizes: list[Reduction] = Field(
        default_factory=list, description="Methods whose loss this one reduces to."
    )


class MethodFile(_Strict):
    """A file of method nodes, ``taxonomy/methods/*.yaml``."""

    methods: list[Method]


class SummaryRowSource(_Strict):
    """Provenance of facts taken from the survey's Table 3 (skill summary)."""

    row: int = Field(ge=1, description="1-based data row of survey-skill-summary.tsv.")
    method: NonEmpty
    citation: NonEmpty
    printed: dict[str, str] = Field(
        default_factory=dict, description="Cells whose printed value differs from ours."
    )


class AwesomeRowSource(_Strict):
    """Provenance of one row of the upstream paper list."""

    section: Slug
    title: NonEmpty
    venue: str
    date: str


class Source(_Strict):
    """Where each fact of a paper came from."""

    awesome_list: list[AwesomeRowSource] = Field(default_factory=list)
    summary_table: list[SummaryRowSource] = Field(default_factory=list)
    metadata: str | None = Field(
        default=None, description="authors_source of paper-metadata.jsonl, when used."
    )
    survey_refs: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Paper(_Strict):
    """One paper of the knowledge base, stored as ``papers/<id>.yaml``."""

    id: PaperId
    title: NonEmpty
    authors: list[NonEmpty] = Field(default_factory=list)
    year: Year
    month: int | None = Field(default=None, ge=1, le=12)
    venue: NonEmpty
    arxiv_id: ArxivId | None = None
    url: Url | None = None
    code: list[Url] = Field(default_factory=list)
    data: list[Url] = Field(default_factory=list)
    nodes: list[Slug] = Field(default_factory=list)
    methods: list[Slug] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)
    teachers: list[NonEmpty] = Field(default_factory=list)
    students: list[NonEmpty] = Field(default_factory=list)
    seed_knowledge: list[NonEmpty] = Field(default_factory=list)
    skills: list[NonEmpty] = Field(default_factory=list)
    elicitation: list[Slug] = Field(default_factory=list)
    objectives: list[Slug] = Field(default_factory=list)
    cited_by_survey: bool = False
    source: Source = Field(default_factory=Source)

    @field_validator("elicitation")
    @classmethod
    def _known_elicitation(cls, value: list[str]) -> list[str]:
        if not value:  # nothing to check: no need to read the taxonomy
            return value
        return _check_members(value, bundled_vocabulary().elicitation, ELICITATION_PARENT)

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        return _check_members(value, bundled_vocabulary().objectives, OBJECTIVE_PARENT)

    @property
    def has_code(self) -> bool:
        """True when at least one code link is known."""
        return bool(self.code)

    @property
    def arxiv_url(self) -> str | None:
        """The abstract page on arXiv, when the paper has an arXiv id."""
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else None


def _check_members(value: list[str], allowed: tuple[str, ...], parent: str) -> list[str]:
    """Refuse ids that are not children of ``parent`` in the bundled ``taxonomy/nodes.yaml``."""
    kind = parent.removesuffix("s")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"not a {kind} node: {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    return value


def slugify(text: str) -> str:
    """Lower-case ``text`` and join its alphanumeric runs with hyphens ('Misc.' -> 'misc')."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))
