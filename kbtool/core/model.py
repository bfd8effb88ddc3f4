"""Typed model of the knowledge base: taxonomy nodes, method nodes and papers.

Every YAML file under ``taxonomy/`` and ``papers/`` is validated against these pydantic
models (``extra="forbid"``, so a misspelt field is an error rather than silently ignored).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kbtool.core.taxonomy import (
    ELICITATION_PARENT,
    OBJECTIVE_PARENT,
    Vocabulary,
    bundled_vocabulary,
)

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
PAPER_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ARXIV_ID_PATTERN = r"^\d{4}\.\d{4,5}$"
URL_PATTERN = r"^https?://[^\s<>\"']+$"
REPO_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
LOSS_PATTERN = r"^reference_impls(?:\.[A-Za-z_][A-Za-z0-9_]*)+$"
#: A demo's arguments: a demo name, then options and plain values (no shell syntax).
DEMO_PATTERN = r"^[a-z_][a-z0-9_]*(?: [A-Za-z0-9_.=-]+)*$"
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


class NodeOrigin(StrEnum):
    """Who defined a taxonomy node: the survey's own tree, or a KD Atlas extension of it."""

    SURVEY = "survey"
    KD_ATLAS = "kd-atlas"


class TaxonomyNode(_Strict):
    """One heading of the taxonomy (a pillar, a group or a leaf), the survey's or our own."""

    id: Slug
    name: NonEmpty
    parent: Slug | None = None
    description: NonEmpty
    order: int = Field(ge=0)
    origin: NodeOrigin = Field(
        description="'survey' for the survey's 40 headings, 'kd-atlas' for our extensions."
    )


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
    utilities: list[Annotated[str, StringConstraints(pattern=LOSS_PATTERN)]] = Field(
        default_factory=list,
        description="Dotted names of the other reference functions the method needs beside its "
        "loss (samplers, estimators, schedules, data selection); the site shows their code.",
    )
    demo: Annotated[str, StringConstraints(pattern=DEMO_PATTERN)] | None = Field(
        default=None,
        description="Arguments of 'python -m reference_impls.demos' that run this method, when "
        "that is not its loss's own demo (a scenario such as 'speculative_kd --loss forward_kl').",
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


class Basis(StrEnum):
    """Who put a paper on a node: the survey authors' list, our crosswalk, or a review."""

    SURVEY_LIST = "survey-list"
    CROSSWALK = "crosswalk"
    REVIEWED = "reviewed"


class ListSection(_Strict):
    """One section heading of a curated public paper list (``owner/name`` on GitHub)."""

    repo: Annotated[str, StringConstraints(pattern=REPO_PATTERN)]
    section: NonEmpty


class Placement(_Strict):
    """The basis of one placement of a paper on a taxonomy node.

    ``crosswalk`` placements name the list sections that ``taxonomy/crosswalk.yaml`` maps to
    the node; ``reviewed`` ones may say why the reviewer chose the node.
    """

    node: Slug
    basis: Basis
    sections: list[ListSection] = Field(
        default_factory=list, description="crosswalk only: the list sections mapped to the node."
    )
    note: NonEmpty | None = Field(default=None, description="reviewed only: why this node.")

    @model_validator(mode="after")
    def _basis_fields(self) -> Placement:
        if self.basis is Basis.CROSSWALK and not self.sections:
            raise ValueError("a crosswalk placement names at least one list section")
        if self.basis is not Basis.CROSSWALK and self.sections:
            raise ValueError(f"a {self.basis.value} placement has no list sections")
        if self.basis is not Basis.REVIEWED and self.note is not None:
            raise ValueError("only a reviewed placement has a note")
        return self


class ListedAt(ListSection):
    """A list section with the commit of the list that was read."""

    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}$")] | None = None


class PostSurveySource(_Strict):
    """Provenance of a paper imported from the post-survey source (post-survey-papers.jsonl)."""

    file: NonEmpty = Field(description="The source file's name.")
    verified_by: NonEmpty = Field(description="Evidence URL of the id-title pair, or 'list'.")
    sections: list[ListedAt] = Field(
        default_factory=list, description="Every list section that files the paper."
    )
    venue: str | None = Field(default=None, description="The venue as the source prints it.")


class Source(_Strict):
    """Where each fact of a paper came from."""

    awesome_list: list[AwesomeRowSource] = Field(default_factory=list)
    summary_table: list[SummaryRowSource] = Field(default_factory=list)
    metadata: str | None = Field(
        default=None, description="authors_source of paper-metadata.jsonl, when used."
    )
    survey_refs: list[int] = Field(default_factory=list)
    post_survey: PostSurveySource | None = None
    venue_year: str | None = Field(
        default=None, description="Where venue_year comes from (e.g. 'dblp', 'papercopilot')."
    )
    notes: list[str] = Field(default_factory=list)


class Paper(_Strict):
    """One paper of the knowledge base, stored as ``papers/<id>.yaml``."""

    id: PaperId
    title: NonEmpty
    authors: list[NonEmpty] = Field(default_factory=list)
    year: Year
    month: int | None = Field(default=None, ge=1, le=12)
    venue: NonEmpty
    venue_year: Year | None = Field(
        default=None, description="The venue's own year (e.g. ICLR 2024), only where a source says."
    )
    arxiv_id: ArxivId | None = None
    url: Url | None = None
    code: list[Url] = Field(default_factory=list)
    data: list[Url] = Field(default_factory=list)
    nodes: list[Slug] = Field(default_factory=list)
    placements: list[Placement] = Field(
        default_factory=list, description="The basis of each node in ``nodes``, one per node."
    )
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
    def _known_elicitation(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:  # nothing to check: no need to read the taxonomy
            return value
        return _check_members(value, _vocabulary(info).elicitation, ELICITATION_PARENT)

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            return value
        return _check_members(value, _vocabulary(info).objectives, OBJECTIVE_PARENT)

    @field_validator("placements")
    @classmethod
    def _placements_match_nodes(
        cls, value: list[Placement], info: ValidationInfo
    ) -> list[Placement]:
        if not value:
            return value
        placed = {p.node for p in value}
        if len(placed) != len(value):
            raise ValueError("a node has more than one placement")
        nodes = set(info.data.get("nodes") or [])
        if placed != nodes:
            missing, extra = sorted(nodes - placed), sorted(placed - nodes)
            parts = [f"nodes without a placement: {', '.join(missing)}"] if missing else []
            parts += [f"placements of nodes not in nodes: {', '.join(extra)}"] if extra else []
            raise ValueError("; ".join(parts))
        return value

    @field_validator("venue_year")
    @classmethod
    def _venue_has_year(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        venue = str(info.data.get("venue") or "")
        if venue.casefold() in _NO_VENUE:
            raise ValueError(f"{venue!r} is not a venue with a year of its own")
        return value

    def basis_of(self, node_id: str) -> Placement | None:
        """The placement record of ``node_id`` (None for a node without a recorded basis)."""
        return next((p for p in self.placements if p.node == node_id), None)

    @property
    def first_version(self) -> tuple[int, int | None]:
        """(year, month) of the first version: from the arXiv id when there is one."""
        if self.arxiv_id:
            return 2000 + int(self.arxiv_id[:2]), int(self.arxiv_id[2:4])
        return self.year, self.month

    @property
    def has_code(self) -> bool:
        """True when at least one code link is known."""
        return bool(self.code)

    @property
    def arxiv_url(self) -> str | None:
        """The abstract page on arXiv, when the paper has an arXiv id."""
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else None


_NO_VENUE = {"arxiv", "other", "biorxiv"}


#: The validation context key under which a loader passes the vocabulary it read once.
VOCABULARY_CONTEXT = "vocabulary"


def _vocabulary(info: ValidationInfo) -> Vocabulary:
    """The vocabulary the loader passed in the validation context, else the bundled one."""
    context = info.context
    if isinstance(context, dict) and isinstance(context.get(VOCABULARY_CONTEXT), Vocabulary):
        vocabulary: Vocabulary = context[VOCABULARY_CONTEXT]
        return vocabulary
    return bundled_vocabulary()


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
