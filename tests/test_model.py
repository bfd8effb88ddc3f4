"""Tests of the pydantic model: every stored record is strict about fields, formats and enums."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kbtool.core.model import Method, Paper, TaxonomyNode, slugify

PAPER: dict[str, Any] = {
    "id": "gu2023minillm",
    "title": "MiniLLM: Knowledge Distillation of Large Language Models",
    "year": 2023,
    "venue": "ICLR",
}
METHOD: dict[str, Any] = {
    "id": "forward-kl",
    "name": "Forward KL",
    "nodes": ["divergence-and-similarity"],
    "description": "Minimise KL(p || q).",
    "teacher_access": "white-box",
    "same_tokenizer_required": True,
    "on_policy": False,
    "formula": r"\mathrm{KL}(p \,\|\, q)",
    "loss": "reference_impls.forward_kl",
}


def paper(**changes: Any) -> Paper:  # noqa: ANN401
    """A minimal valid paper with ``changes`` applied."""
    return Paper.model_validate({**PAPER, **changes})


def method(**changes: Any) -> Method:  # noqa: ANN401
    """A minimal valid method with ``changes`` applied."""
    return Method.model_validate({**METHOD, **changes})


def error_fields(exc: ValidationError) -> set[str]:
    """The dotted locations of every error of a validation failure."""
    return {".".join(str(x) for x in e["loc"]) for e in exc.errors()}


def test_minimal_records_are_valid() -> None:
    """The baseline dicts used below are valid, so each failure is due to its one change."""
    p = paper()
    assert p.nodes == [] and p.cited_by_survey is False and p.arxiv_url is None
    assert method().loss == "reference_impls.forward_kl"


@pytest.mark.parametrize(
    "model, data",
    [
        (Paper, {**PAPER, "venu": "ICLR"}),
        (Method, {**METHOD, "teacher": "white-box"}),
        (
            TaxonomyNode,
            {
                "id": "feature",
                "name": "Feature",
                "description": "d",
                "order": 0,
                "origin": "survey",
                "x": 1,
            },
        ),
    ],
)
def test_extra_fields_are_forbidden(
    model: type[Paper | Method | TaxonomyNode], data: dict[str, Any]
) -> None:
    """A misspelt field is an error, not silently dropped data."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert [e["type"] for e in info.value.errors()] == ["extra_forbidden"]


def test_extra_field_in_nested_source_is_forbidden() -> None:
    """Provenance records are strict too."""
    with pytest.raises(ValidationError) as info:
        paper(source={"summary_table": [{"row": 1, "method": "M", "citation": "C", "colour": "x"}]})
    assert error_fields(info.value) == {"source.summary_table.0.colour"}


@pytest.mark.parametrize("good", ["2306.08543", "1503.02531", "2402.1234"])
def test_arxiv_id_accepts_new_style_ids(good: str) -> None:
    """YYMM.NNNN(N) without version is the stored form."""
    assert paper(arxiv_id=good).arxiv_url == f"https://arxiv.org/abs/{good}"


@pytest.mark.parametrize(
    "bad",
    [
        "2306.08543v2",
        "arXiv:2306.08543",
        "2306.854",
        "230608543",
        "hep-th/9901001",
        " ",
        2306.08543,
    ],
)
def test_arxiv_id_rejects_other_forms(bad: object) -> None:
    """Versions, prefixes, old-style ids and YAML floats (unquoted ids) are refused."""
    with pytest.raises(ValidationError) as info:
        paper(arxiv_id=bad)
    assert error_fields(info.value) == {"arxiv_id"}


@pytest.mark.parametrize(
    "good", ["https://arxiv.org/abs/2306.08543", "http://example.org/a?b=1&c=2"]
)
def test_url_accepts_http_and_https(good: str) -> None:
    """Plain web links pass."""
    assert paper(url=good, code=[good]).url == good


@pytest.mark.parametrize(
    "bad",
    [
        "javascript:alert(1)",
        "ftp://example.org/x",
        "https://exa mple.org",
        "example.org",
        'https://a"b',
    ],
)
def test_url_rejects_non_web_links(bad: str) -> None:
    """Scripts, other schemes, spaces and quotes are refused in url, code and data."""
    for name in ("url", "code", "data"):
        value: object = bad if name == "url" else [bad]
        with pytest.raises(ValidationError) as info:
            paper(**{name: value})
        assert {f.split(".")[0] for f in error_fields(info.value)} == {name}


@pytest.mark.parametrize("bad", [1989, 2031, "abc", 2023.5, None])
def test_year_must_be_a_plausible_integer(bad: object) -> None:
    """Years outside 1990..2030 and non-integers are refused."""
    with pytest.raises(ValidationError) as info:
        paper(year=bad)
    assert error_fields(info.value) == {"year"}


@pytest.mark.parametrize("bad", [0, 13, "June"])
def test_month_is_1_to_12(bad: object) -> None:
    """Months are numbers 1..12."""
    with pytest.raises(ValidationError) as info:
        paper(month=bad)
    assert error_fields(info.value) == {"month"}


@pytest.mark.parametrize("good", ["feature", "divergence-and-similarity", "nlu", "a1-b2"])
def test_node_slugs_accepted(good: str) -> None:
    """Lower-case words joined by single hyphens."""
    assert paper(nodes=[good]).nodes == [good]


@pytest.mark.parametrize("bad", ["Feature", "a--b", "-a", "a-", "a_b", "a b", ""])
def test_node_slugs_rejected(bad: str) -> None:
    """Upper case, doubled/leading/trailing hyphens, underscores and spaces are not slugs."""
    with pytest.raises(ValidationError) as info:
        paper(nodes=[bad])
    assert error_fields(info.value) == {"nodes.0"}


@pytest.mark.parametrize("bad", ["Gu2023", "-x", "a" * 81, "a.b"])
def test_paper_id_format(bad: str) -> None:
    """Paper ids are lower-case file-name-safe strings of at most 80 characters."""
    with pytest.raises(ValidationError) as info:
        paper(id=bad)
    assert error_fields(info.value) == {"id"}


def test_blank_strings_are_refused_after_stripping() -> None:
    """Whitespace-only titles and author names are empty values."""
    with pytest.raises(ValidationError):
        paper(title="   ")
    with pytest.raises(ValidationError):
        paper(authors=["Yuxian Gu", " "])
    assert paper(title="  MiniLLM  ").title == "MiniLLM"


def test_elicitation_restricted_to_elicitation_nodes() -> None:
    """Only the six knowledge-elicitation leaves are allowed in ``elicitation``."""
    allowed = ["labeling", "expansion", "curation", "feature", "feedback", "self-knowledge"]
    assert paper(elicitation=allowed).elicitation == allowed
    for bad in ("supervised-fine-tuning", "knowledge-elicitation", "medical-healthcare"):
        with pytest.raises(ValidationError) as info:
            paper(elicitation=["labeling", bad])
        assert error_fields(info.value) == {"elicitation"}
        assert bad in str(info.value)


def test_objectives_restricted_to_distillation_algorithm_nodes() -> None:
    """Only the four distillation-algorithm leaves are allowed in ``objectives``."""
    allowed = [
        "supervised-fine-tuning",
        "divergence-and-similarity",
        "reinforcement-learning",
        "rank-optimization",
    ]
    assert paper(objectives=allowed).objectives == allowed
    for bad in ("labeling", "distillation-algorithms", "dpo"):
        with pytest.raises(ValidationError) as info:
            paper(objectives=[bad])
        assert error_fields(info.value) == {"objectives"}


def test_roles_are_an_enum() -> None:
    """Roles are the survey's three roles of KD."""
    assert paper(roles=["compression"]).roles[0].value == "compression"
    with pytest.raises(ValidationError):
        paper(roles=["speed-up"])


@pytest.mark.parametrize(
    "good", ["reference_impls.forward_kl", "reference_impls.sub.minillm_loss", "reference_impls.X1"]
)
def test_method_loss_pattern_accepts_dotted_names(good: str) -> None:
    """``loss`` is a dotted name inside the reference_impls package."""
    assert method(loss=good).loss == good


@pytest.mark.parametrize(
    "bad",
    [
        "reference_impls",
        "os.system",
        "torch.nn.functional.kl_div",
        "reference_impls.forward_kl; rm -rf /",
        "reference_impls.forward-kl",
        "reference_impls..forward_kl",
        "reference_impls.1abc",
    ],
)
def test_method_loss_pattern_rejects_other_names(bad: str) -> None:
    """Anything outside reference_impls, or not a Python dotted name, is refused."""
    with pytest.raises(ValidationError) as info:
        method(loss=bad)
    assert error_fields(info.value) == {"loss"}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("utilities", ["os.system"]),
        ("utilities", ["reference_impls.kl_estimators; rm -rf /"]),
        ("demo", "speculative_kd; rm -rf /"),
        ("demo", "speculative_kd --loss $(whoami)"),
        ("demo", "--loss forward_kl"),
        ("demo", ""),
    ],
)
def test_method_utilities_and_demo_refuse_other_names(field: str, bad: object) -> None:
    """Utilities are dotted names inside reference_impls; a demo is plain words, no shell."""
    with pytest.raises(ValidationError) as info:
        method(**{field: bad})
    assert error_fields(info.value) == {"utilities.0" if field == "utilities" else field}


def test_method_utilities_and_demo_accept_plain_names() -> None:
    made = method(
        utilities=["reference_impls.TAIDSchedule"], demo="speculative_kd --loss forward_kl"
    )
    assert (made.utilities, made.demo) == (
        ["reference_impls.TAIDSchedule"],
        "speculative_kd --loss forward_kl",
    )


def test_method_loss_is_optional() -> None:
    """A method may not have a reference implementation yet."""
    assert method(loss=None).loss is None


@pytest.mark.parametrize("good", ["black-box", "white-box"])
def test_teacher_access_enum_accepts(good: str) -> None:
    """The two kinds of teacher access."""
    assert method(teacher_access=good).teacher_access.value == good


@pytest.mark.parametrize("bad", ["grey-box", "Black-Box", "blackbox", ""])
def test_teacher_access_enum_rejects(bad: str) -> None:
    """Any other value is refused."""
    with pytest.raises(ValidationError) as info:
        method(teacher_access=bad)
    assert error_fields(info.value) == {"teacher_access"}


def test_method_needs_at_least_one_node_and_strict_booleans() -> None:
    """A method belongs somewhere; its flags are required."""
    with pytest.raises(ValidationError) as info:
        method(nodes=[])
    assert error_fields(info.value) == {"nodes"}
    data = {k: v for k, v in METHOD.items() if k != "on_policy"}
    with pytest.raises(ValidationError) as info:
        Method.model_validate(data)
    assert error_fields(info.value) == {"on_policy"}


def test_generalizes_entries_are_checked() -> None:
    """Each reduction names a method slug and a non-empty condition."""
    ok = method(generalizes=[{"method": "reverse-kl", "when": "beta = 0"}])
    assert ok.generalizes[0].method == "reverse-kl"
    with pytest.raises(ValidationError) as info:
        method(generalizes=[{"method": "Reverse KL", "when": ""}])
    assert error_fields(info.value) == {"generalizes.0.method", "generalizes.0.when"}


def test_records_are_frozen() -> None:
    """Loaded records cannot be changed by accident."""
    p = paper()
    with pytest.raises(ValidationError):
        p.title = "changed"  # type: ignore[misc]


def test_taxonomy_node_order_is_non_negative() -> None:
    """Sibling order is a non-negative integer."""
    with pytest.raises(ValidationError):
        TaxonomyNode.model_validate(
            {"id": "a", "name": "A", "description": "d", "order": -1, "origin": "survey"}
        )


def test_taxonomy_node_origin_is_required_and_closed() -> None:
    """Every node says whose it is: the survey's or a KD Atlas extension; nothing else."""
    base = {"id": "a", "name": "A", "description": "d", "order": 0}
    assert TaxonomyNode.model_validate({**base, "origin": "kd-atlas"}).origin == "kd-atlas"
    with pytest.raises(ValidationError) as missing:
        TaxonomyNode.model_validate(base)
    assert [e["loc"] for e in missing.value.errors()] == [("origin",)]
    with pytest.raises(ValidationError):
        TaxonomyNode.model_validate({**base, "origin": "ours"})


@pytest.mark.parametrize(
    "text, slug",
    [
        ("Misc.", "misc"),
        ("Medical & Healthcare", "medical-healthcare"),
        ("RAG Capability", "rag-capability"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    """Headings of the list become node ids."""
    assert slugify(text) == slug
