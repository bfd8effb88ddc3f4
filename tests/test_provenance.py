"""Issue 14: each placement records its basis, papers may carry the venue's own year, and
queries filter by basis, node origin and first-version month (``since``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from post_survey_kb import NEW_IDS, SECTION, build_post_survey_kb
from pydantic import ValidationError
from typer.testing import CliRunner

import kbtool
from kbtool.cli import app
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import load_records
from kbtool.core.model import Paper
from kbtool.core.safe_yaml import dump_yaml
from kbtool.ingest.paper_io import paper_to_data, write_paper

BASE: dict[str, Any] = {"id": "x2025y", "title": "Y", "year": 2025, "venue": "arXiv"}


def paper(**changes: Any) -> Paper:  # noqa: ANN401
    return Paper.model_validate({**BASE, **changes})


def errors_of(**changes: Any) -> list[tuple[str, str]]:  # noqa: ANN401
    with pytest.raises(ValidationError) as info:
        paper(**changes)
    return [(".".join(map(str, e["loc"])), str(e["msg"])) for e in info.value.errors()]


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    return kbtool.load(build_post_survey_kb(tmp_path / "kb"))


# --- model -----------------------------------------------------------------------------------
def test_each_basis_is_accepted_with_its_own_fields() -> None:
    p = paper(
        nodes=["a", "b", "c"],
        placements=[
            {"node": "a", "basis": "survey-list"},
            {"node": "b", "basis": "crosswalk", "sections": [SECTION]},
            {"node": "c", "basis": "reviewed", "note": "title says so"},
        ],
    )
    assert [(x.node, x.basis.value) for x in p.placements] == [
        ("a", "survey-list"),
        ("b", "crosswalk"),
        ("c", "reviewed"),
    ]
    assert p.basis_of("b") is not None and p.basis_of("b").sections[0].repo == SECTION["repo"]
    assert p.basis_of("zzz") is None


@pytest.mark.parametrize(
    ("placement", "needle"),
    [
        ({"node": "a", "basis": "crosswalk"}, "names at least one list section"),
        ({"node": "a", "basis": "reviewed", "sections": [SECTION]}, "has no list sections"),
        ({"node": "a", "basis": "survey-list", "note": "x"}, "only a reviewed placement"),
        ({"node": "a", "basis": "guessed"}, "survey-list"),
    ],
)
def test_placement_fields_must_fit_the_basis(placement: dict[str, Any], needle: str) -> None:
    found = errors_of(nodes=["a"], placements=[placement])
    assert any(loc.startswith("placements.0") and needle in msg for loc, msg in found), found


def test_placements_must_cover_exactly_the_nodes() -> None:
    found = errors_of(nodes=["a", "b"], placements=[{"node": "a", "basis": "reviewed"}])
    assert len(found) == 1 and found[0][0] == "placements"
    assert found[0][1].endswith("nodes without a placement: b")
    found = errors_of(
        nodes=["a"],
        placements=[{"node": "a", "basis": "reviewed"}, {"node": "a", "basis": "survey-list"}],
    )
    assert len(found) == 1 and found[0][0] == "placements"
    assert found[0][1].endswith("a node has more than one placement")


def test_a_stored_paper_needs_a_basis_for_every_node(tmp_path: Path) -> None:
    root = build_post_survey_kb(tmp_path / "kb")
    write_paper(root, paper(nodes=["feedback"]))
    problems = [p for p in load_records(root).problems if p.file == "papers/x2025y.yaml"]
    assert [(p.field, p.message) for p in problems] == [
        ("placements", "no recorded basis for node(s) feedback")
    ]


def test_venue_year_only_for_a_real_venue() -> None:
    assert paper(venue="ICLR", venue_year=2024).venue_year == 2024
    found = errors_of(venue="arXiv", venue_year=2024)
    assert len(found) == 1 and found[0][0] == "venue_year"
    assert found[0][1].endswith("'arXiv' is not a venue with a year of its own")


def test_yaml_stays_readable_without_empty_basis_fields() -> None:
    p = paper(nodes=["a"], placements=[{"node": "a", "basis": "survey-list"}])
    text = dump_yaml(paper_to_data(p))
    assert "placements:\n  - node: a\n    basis: survey-list\nmethods:" in text


def test_first_version_comes_from_the_arxiv_id() -> None:
    assert paper(arxiv_id="2306.08543", year=2024, month=None).first_version == (2023, 6)
    assert paper(month=4).first_version == (2025, 4)


# --- queries ---------------------------------------------------------------------------------
def test_since_selects_by_first_version_month(kb: KnowledgeBase) -> None:
    assert [p.id for p in kb.query(since="2024-03")] == NEW_IDS
    assert [p.id for p in kb.query(since="2025-07")] == ["kim2026self"]
    # kb_small's newest paper is DistiLLM, arXiv 2402.03898
    assert "ko2024distillm" in [p.id for p in kb.query(since="2024-02")]


def test_since_rejects_a_malformed_month(kb: KnowledgeBase) -> None:
    for bad in ("2024", "2024-13", "03-2024"):
        with pytest.raises(ValueError, match="expected a month as YYYY-MM"):
            kb.query(since=bad)


def test_filters_by_basis_and_origin(kb: KnowledgeBase) -> None:
    assert [p.id for p in kb.query(basis="reviewed")] == ["lee2025onpolicy", "agents2024distilling"]
    assert [p.id for p in kb.query(basis="crosswalk")] == ["kim2026self", "lee2025onpolicy"]
    assert len(kb.query(basis="survey-list")) == 5  # kb_small's placed papers
    assert [p.id for p in kb.query(origin="kd-atlas")] == ["kim2026self", "lee2025onpolicy"]
    assert "agents2024distilling" in [p.id for p in kb.query(origin="survey")]
    with pytest.raises(KeyError, match="unknown basis 'guess'"):
        kb.query(basis="guess")
    with pytest.raises(KeyError, match="unknown origin 'ours'"):
        kb.query(origin="ours")


def test_cli_query_since_and_basis(tmp_path: Path) -> None:
    root = build_post_survey_kb(tmp_path / "kb")
    runner = CliRunner(env={"COLUMNS": "1000"})
    args = ["query", "--since", "2024-03", "--basis", "crosswalk", "--format", "json"]
    result = runner.invoke(app, [*args, "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert [p["id"] for p in json.loads(result.stdout)] == ["kim2026self", "lee2025onpolicy"]
    bad = runner.invoke(app, ["query", "--since", "March", "--root", str(root)])
    assert bad.exit_code == 1 and "expected a month as YYYY-MM" in bad.stderr
    assert "Traceback" not in bad.output


def test_every_real_survey_list_paper_keeps_that_basis() -> None:
    """Papers from the survey's own list have survey-list placements only."""
    kb = kbtool.load()
    listed = [p for p in kb.papers.values() if p.source.awesome_list]
    assert len(listed) > 200
    assert all(x.basis.value == "survey-list" for p in listed for x in p.placements)
    assert all(p.basis_of(n) is not None for p in listed for n in p.nodes)
