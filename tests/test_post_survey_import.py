"""``kbtool import-papers`` (issue 14): the post-survey source placed by a crosswalk and reviews.

Every source line, crosswalk and review file here is written by the test (made-up papers with
plausible shapes); only ``test_the_real_source_reads_cleanly`` reads ../shared, as it says.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

import kbtool
from kbtool.cli import app
from kbtool.core.errors import KnowledgeBaseError
from kbtool.ingest.post_survey import import_post_survey
from kbtool.ingest.post_survey_source import read_source, split_venue
from kbtool.ingest.report_sections import marked_sections, set_section

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
OPD = "owner-a/awesome-opd"
EFF = "owner-b/efficient-llm"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def line(arxiv_id: str, title: str, *sections: tuple[str, str], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """One source record with the format's fields."""
    record: dict[str, Any] = {
        "title": title,
        "arxiv_id": arxiv_id,
        "date": f"20{arxiv_id[:2]}-{arxiv_id[2:4]}",
        "authors": ["Ann Lee", "Bo Kim"],
        "venue": None,
        "code": [],
        "list_sections": [{"repo": r, "commit": COMMIT, "section": s} for r, s in sections],
        "verified_by": "list",
    }
    return {**record, **extra}


RECORDS = [
    line(
        "2403.00001",
        "Token-Level On-Policy Distillation",
        (OPD, "Core > Token-Level"),
        (EFF, "Knowledge Distillation"),
        venue="ICLR 2025",
        code=["https://github.com/example/opd"],
    ),
    line("2501.00002", "Agents That Distil Themselves", (OPD, "Papers > 2026"), authors=[]),
    line("2502.00003", "A Text Embedding Model Distilled", (OPD, "Papers > 2026")),
    # the fixture KB already has this title under arXiv 2306.08543
    line(
        "2504.00004",
        "MiniLLM: Knowledge Distillation of Large Language Models",
        (EFF, "Knowledge Distillation"),
    ),
    # the fixture KB already has this arXiv id (DistiLLM) under the same title
    line(
        "2402.03898",
        "DistiLLM: Towards Streamlined Distillation for Large Language Models",
        (EFF, "Knowledge Distillation"),
    ),
]
CROSSWALK = {
    "lists": [
        {
            "repo": OPD,
            "sections": [
                {"section": "Core > Token-Level", "nodes": ["divergence-and-similarity"]},
                {"section": "Papers > 2026", "nodes": [], "unmapped": "a year heading"},
            ],
        },
        {
            "repo": EFF,
            "sections": [
                {
                    "section": "Knowledge Distillation",
                    "nodes": ["divergence-and-similarity", "feedback"],
                }
            ],
        },
    ]
}
REVIEWS = {
    "reviews": [
        {"arxiv_id": "2403.00001", "nodes": ["reinforcement-learning"], "shortlist": ["feedback"]},
        {
            "arxiv_id": "2501.00002",
            "nodes": ["self-knowledge"],
            "note": "self-distillation of agents",
        },
        {"arxiv_id": "2502.00003", "drop": "text-embedding (encoder) model"},
    ]
}


def write_inputs(
    base: Path,
    records: list[dict[str, Any]] | None = None,
    crosswalk: dict[str, Any] | None = None,
    reviews: dict[str, Any] | None = None,
) -> tuple[Path, Path, Path]:
    base.mkdir(exist_ok=True)
    source, cw, rv = base / "post.jsonl", base / "crosswalk.yaml", base / "reviews.yaml"
    lines = [json.dumps(r, ensure_ascii=False) for r in (RECORDS if records is None else records)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cw.write_text(json.dumps(CROSSWALK if crosswalk is None else crosswalk), encoding="utf-8")
    rv.write_text(json.dumps(REVIEWS if reviews is None else reviews), encoding="utf-8")
    return source, cw, rv


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the knowledge base but the derived ``.cache/`` (the load cache, which any
    load may refresh)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != ".cache"
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    shutil.copytree(KB_SMALL, kb)
    (kb / "papers" / "IMPORT_REPORT.md").write_text("# Import report\n\nawesome list part\n")
    return kb


def run(root: Path, *inputs: Path) -> Any:  # noqa: ANN401
    return import_post_survey(root, inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None)


# --- a good import ---------------------------------------------------------------------------
def test_import_places_each_paper_with_its_basis(root: Path, tmp_path: Path) -> None:
    report = run(root, *write_inputs(tmp_path / "in"))
    assert report.added == ["lee2024token", "agents2025that"]
    kb = kbtool.load(root)
    opd = kb.papers["lee2024token"]
    assert opd.nodes == ["divergence-and-similarity", "feedback", "reinforcement-learning"]
    dis = opd.basis_of("divergence-and-similarity")
    assert dis is not None and dis.basis.value == "crosswalk"
    assert [(s.repo, s.section) for s in dis.sections] == [
        (OPD, "Core > Token-Level"),
        (EFF, "Knowledge Distillation"),
    ]
    assert opd.basis_of("reinforcement-learning").basis.value == "reviewed"  # type: ignore[union-attr]
    assert (opd.venue, opd.venue_year, opd.year, opd.month) == ("ICLR", 2025, 2024, 3)
    assert opd.code == ["https://github.com/example/opd"]
    assert opd.source.post_survey is not None
    assert (
        opd.source.post_survey.file == "post.jsonl" and opd.source.post_survey.verified_by == "list"
    )
    assert opd.source.post_survey.sections[0].commit == COMMIT
    agents = kb.papers["agents2025that"]
    assert agents.authors == []  # never invented
    assert [(p.node, p.basis.value, p.note) for p in agents.placements] == [
        ("self-knowledge", "reviewed", "self-distillation of agents")
    ]
    assert agents.venue == "arXiv" and agents.venue_year is None


def test_report_lists_drops_and_conflicts_beside_the_other_report(
    root: Path, tmp_path: Path
) -> None:
    run(root, *write_inputs(tmp_path / "in"))
    text = (root / "papers" / "IMPORT_REPORT.md").read_text(encoding="utf-8")
    assert text.startswith("# Import report\n\nawesome list part\n")  # not clobbered
    assert (
        "arXiv 2502.00003 'A Text Embedding Model Distilled': text-embedding (encoder) model"
        in text
    )
    assert (
        "(arXiv 2504.00004) is already present as papers/gu2023minillm.yaml (arXiv 2306.08543)"
        in text
    )
    assert "arXiv 2402.03898 is already papers/ko2024distillm.yaml" in text
    assert "in the knowledge base from this source: 2" in text


def test_second_run_changes_nothing(root: Path, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in")
    run(root, *inputs)
    before = snapshot(root)
    report = run(root, *inputs)
    assert (report.added, report.updated) == ([], [])
    assert snapshot(root) == before


def test_newer_file_adds_and_reports_what_changed(root: Path, tmp_path: Path) -> None:
    run(root, *write_inputs(tmp_path / "v1"))
    before = snapshot(root)
    newer = [
        *RECORDS[:1],
        {
            **RECORDS[1],
            "list_sections": [
                *RECORDS[1]["list_sections"],
                {"repo": OPD, "commit": COMMIT, "section": "Core > Token-Level"},
            ],
        },
        *RECORDS[2:],
        line(
            "2606.00005",
            "Distilling Drafters for Speculative Decoding",
            (EFF, "Knowledge Distillation"),
        ),
    ]
    report = run(root, *write_inputs(tmp_path / "v2", newer))
    assert report.added == ["lee2026distilling"]
    assert report.updated == ["agents2025that"]
    after = snapshot(root)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {
        "papers/lee2026distilling.yaml",
        "papers/agents2025that.yaml",
        "papers/IMPORT_REPORT.md",
    }
    agents = kbtool.load(root).papers["agents2025that"]
    assert [(p.node, p.basis.value) for p in agents.placements] == [
        ("divergence-and-similarity", "crosswalk"),
        ("self-knowledge", "reviewed"),
    ]


def test_dedup_by_arxiv_id_reports_a_second_title(root: Path, tmp_path: Path) -> None:
    records = [line("2306.08543", "A Different Title For That Id", (EFF, "Knowledge Distillation"))]
    report = run(root, *write_inputs(tmp_path / "in", records, reviews={"reviews": []}))
    assert report.added == []
    assert report.conflicts == [
        "arXiv 2306.08543 is 'A Different Title For That Id' in the source but 'MiniLLM: "
        "Knowledge Distillation of Large Language Models' in papers/gu2023minillm.yaml; the "
        "existing paper is kept unchanged"
    ]


def test_one_id_with_two_titles_in_the_source(root: Path, tmp_path: Path) -> None:
    records = [
        line("2601.00001", "First Title of a Paper", (EFF, "Knowledge Distillation")),
        line("2601.00001", "Another Title Entirely", (EFF, "Knowledge Distillation")),
    ]
    report = run(root, *write_inputs(tmp_path / "in", records, reviews={"reviews": []}))
    assert report.added == ["lee2026first"]
    assert report.conflicts == [
        "arXiv 2601.00001 has two titles in the source: 'First Title of a Paper' (line 1) and "
        "'Another Title Entirely' (line 2); kept the first"
    ]


# --- bad input: every problem named, nothing written ------------------------------------------
def _bad_cases() -> list[tuple[str, dict[str, Any], tuple[str, str, str]]]:
    missing = {k: v for k, v in RECORDS[0].items() if k != "verified_by"}
    unknown_node = json.loads(json.dumps(CROSSWALK))
    unknown_node["lists"][0]["sections"][0]["nodes"] = ["on-policy-nodes"]
    no_section = json.loads(json.dumps(CROSSWALK))
    del no_section["lists"][0]["sections"][1]
    return [
        (
            "bad JSON",
            {"text": '{"title": "x",\n'},
            ("post.jsonl:line 1", "(line)", "not valid JSON"),
        ),
        (
            "missing field",
            {"records": [missing]},
            ("post.jsonl:line 1", "verified_by", "required field is missing"),
        ),
        (
            "bad date",
            {"records": [{**RECORDS[0], "date": "2024-04"}]},
            ("post.jsonl:line 1", "date", "not the month of arXiv id 2403.00001"),
        ),
        (
            "unknown node",
            {"crosswalk": unknown_node},
            ("crosswalk.yaml", "lists.0.sections.0.nodes", "unknown node 'on-policy-nodes'"),
        ),
        (
            "section not covered",
            {"crosswalk": no_section},
            (
                "crosswalk.yaml",
                "lists",
                "'Papers > 2026' of owner-a/awesome-opd (first at post.jsonl:line 2) is neither "
                "mapped nor listed as unmapped",
            ),
        ),
        (
            "review of unknown id",
            {
                "reviews": {
                    "reviews": [
                        *REVIEWS["reviews"],
                        {"arxiv_id": "2599.00009", "nodes": ["labeling"]},
                    ]
                }
            },
            ("reviews.yaml", "reviews.3.arxiv_id", "2599.00009 is not a paper of the source file"),
        ),
        (
            "review nodes and drop",
            {
                "reviews": {
                    "reviews": [{"arxiv_id": "2403.00001", "nodes": ["labeling"], "drop": "x"}]
                }
            },
            ("reviews.yaml", "reviews.0", "either a non-empty `nodes` list or a `drop` reason"),
        ),
        (
            "unknown shortlist node",
            {
                "reviews": {
                    "reviews": [
                        {"arxiv_id": "2403.00001", "nodes": ["labeling"], "shortlist": ["nope"]},
                        *REVIEWS["reviews"][1:],
                    ]
                }
            },
            ("reviews.yaml", "reviews.0.shortlist", "unknown node 'nope'"),
        ),
        (
            "no node, no review",
            {"reviews": {"reviews": REVIEWS["reviews"][:1]}},
            (
                "post.jsonl:line 2",
                "list_sections",
                "arXiv 2501.00002 gets no node: no mapped section and no review",
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("case", "change", "expected"), _bad_cases(), ids=[c[0] for c in _bad_cases()]
)
def test_bad_input_is_reported_and_nothing_written(
    root: Path, tmp_path: Path, case: str, change: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    source, cw, rv = write_inputs(
        tmp_path / "in", change.get("records"), change.get("crosswalk"), change.get("reviews")
    )
    if "text" in change:
        source.write_text(change["text"], encoding="utf-8")
    before = snapshot(root)
    with pytest.raises(KnowledgeBaseError) as info:
        run(root, source, cw, rv)
    found = [
        (Path(p.file).name if "/" in p.file else p.file, p.field, p.message)
        for p in info.value.problems
    ]
    assert any(
        f == expected[0] and fld == expected[1] and expected[2] in m for f, fld, m in found
    ), found
    assert snapshot(root) == before


def _import_cli(source: Path, crosswalk: Path, reviews: Path, root: Path) -> Result:
    """``kbtool import-papers`` on these files, in a wide terminal."""
    args = ["--crosswalk", str(crosswalk), "--reviews", str(reviews), "--root", str(root)]
    return CliRunner(env={"COLUMNS": "1000"}).invoke(app, ["import-papers", str(source), *args])


def test_cli_bad_input_exits_1_with_file_field_lines(root: Path, tmp_path: Path) -> None:
    source, cw, rv = write_inputs(tmp_path / "in", reviews={"reviews": []})
    before = snapshot(root)
    result = _import_cli(source, cw, rv, root)
    assert result.exit_code == 1
    assert f"{source.name}:line 2: list_sections: arXiv 2501.00002 gets no node" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(root) == before


def test_cli_good_input_prints_what_changed(root: Path, tmp_path: Path) -> None:
    source, cw, rv = write_inputs(tmp_path / "in")
    result = _import_cli(source, cw, rv, root)
    assert result.exit_code == 0, result.output
    assert "5 papers in the source: 2 added, 0 updated, 1 dropped" in result.stdout
    assert "+ lee2024token" in result.stdout
    again = _import_cli(source, cw, rv, root)
    assert "0 added, 0 updated" in again.stdout


# --- pieces ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ICLR 2025", ("ICLR", 2025)),
        ("ACL'24", ("ACL", 2024)),
        ("EMNLP2024-findings", ("Findings of EMNLP", 2024)),
        ("Findings of ACL 2026", ("Findings of ACL", 2026)),
        ("NeurIPS 2025 (poster)", ("NeurIPS", 2025)),
        ("NIPS2024", ("NeurIPS", 2024)),
        ("ACL 2026 Main", ("ACL", 2026)),
        ("LREC-COLING'24", ("LREC-COLING", 2024)),
        ("Some Workshop", ("Some Workshop", None)),
    ],
)
def test_split_venue(raw: str, expected: tuple[str, int | None]) -> None:
    assert split_venue(raw) == expected


def test_report_sections_are_kept_apart() -> None:
    text = set_section("# Import report\n", "import-papers", "## Post-survey papers\n- a")
    again = set_section(text, "import-papers", "## Post-survey papers\n- b")
    assert again.count("Post-survey papers") == 1 and "- b" in again and "- a" not in again
    assert marked_sections(again).startswith("<!-- import-papers: begin -->\n## Post-survey")


def test_the_real_source_reads_cleanly() -> None:
    """Reads ../shared/sources/post-survey-papers.jsonl (the one importer test allowed to)."""
    path = Path(__file__).resolve().parents[3] / "shared" / "sources" / "post-survey-papers.jsonl"
    if not path.is_file():
        path = Path("/work/shared/sources/post-survey-papers.jsonl")
    records, problems = read_source(path)
    assert problems == []
    assert len({r.arxiv_id for r in records}) == len(records) >= 333
    assert all(r.sections or r.arxiv_id in ("2505.04560", "2503.16870") for r in records)


def test_cli_defaults_to_the_crosswalk_and_reviews_of_the_root(root: Path, tmp_path: Path) -> None:
    source, cw, rv = write_inputs(tmp_path / "in")
    shutil.copy(cw, root / "taxonomy" / "crosswalk.yaml")
    shutil.copy(rv, root / "taxonomy" / "reviews.yaml")
    result = CliRunner(env={"COLUMNS": "1000"}).invoke(
        app, ["import-papers", str(source), "--root", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert f"reviews {root / 'taxonomy' / 'reviews.yaml'}" in result.stdout
    assert "2 added" in result.stdout


def test_reimport_keeps_facts_added_by_hand(root: Path, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in")
    run(root, *inputs)
    path = root / "papers" / "agents2025that.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("authors: []", "authors:\n  - Dee Lu").replace(
        "methods: []", "methods:\n  - forward-kl"
    )
    path.write_text(text, encoding="utf-8")
    report = run(root, *inputs)
    assert report.updated == []
    paper = kbtool.load(root).papers["agents2025that"]
    assert paper.authors == ["Dee Lu"] and paper.methods == ["forward-kl"]


def test_awesome_reimport_keeps_the_post_survey_section(root: Path, tmp_path: Path) -> None:
    from kbtool.ingest.awesome_import import import_awesome

    run(root, *write_inputs(tmp_path / "in"))
    listing = (KB_SMALL.parent / "importer" / "awesome_v1.md").read_text(encoding="utf-8")
    import_awesome(root, listing, source_name="awesome_v1.md")
    text = (root / "papers" / "IMPORT_REPORT.md").read_text(encoding="utf-8")
    assert text.startswith("# Import report\n\nGenerated by `kbtool import-awesome`")
    assert text.count("<!-- import-papers: begin -->") == 1
    assert "'A Text Embedding Model Distilled': text-embedding (encoder) model" in text
