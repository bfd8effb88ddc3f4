"""The importers on small excerpts of the real sources (tests/fixtures/importer/).

``awesome_v1.md`` has 18 rows of the upstream list under 8 taxonomy headings (12 distinct
papers), with its known quirks: PromptKD and MiniLLM in several sections, "Consitutional AI"
vs "Constitutional AI" and "Synthetic Feedback" vs "Synthetic Feedbacks" behind one arXiv link,
arXiv 2306.14050 linked from two different papers, a row repeated in the Divergence and
Similarity table, "EMNLP Findings" and "NIPS" venues, links with spaces before ")".
``awesome_v2.md`` is the same list plus one Baby Llama row. ``metadata.jsonl`` and
``summary.tsv`` are lines of paper-metadata.jsonl and survey-skill-summary.tsv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kbtool
from kbtool.core.errors import KnowledgeBaseError
from kbtool.core.model import Paper
from kbtool.ingest.awesome import parse_awesome
from kbtool.ingest.awesome_import import REPORT_NAME, import_awesome
from kbtool.ingest.metadata import MetadataError, load_metadata
from kbtool.ingest.metadata_import import import_metadata
from kbtool.ingest.survey_table import import_summary, normalise_row, parse_summary
from kbtool.ingest.venues import normalize_venue

FIXTURES = Path(__file__).parent / "fixtures"
KB_SMALL = FIXTURES / "kb_small"
IMPORTER = FIXTURES / "importer"
V1 = (IMPORTER / "awesome_v1.md").read_text(encoding="utf-8")
V2 = (IMPORTER / "awesome_v2.md").read_text(encoding="utf-8")
SUMMARY = (IMPORTER / "summary.tsv").read_text(encoding="utf-8")

CONSTITUTIONAL = "Constitutional AI: Harmlessness from AI Feedback"
ALMOST = "Aligning Large Language Models through Synthetic Feedback"
SYMBOLIC = 'Symbolic Chain-of-Thought Distillation: Small Models Can Also "Think" Step-by-Step'
SELF_IMPROVEMENT = (
    "Self-Improvement of Large Language Models via Reinforcement Learning from Human Feedback"
)
F_DIV = "f-Divergence Minimization for Sequence-Level Knowledge Distillation"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A KB with the fixture taxonomy, no methods and no papers yet."""
    base = tmp_path / "kb"
    (base / "taxonomy").mkdir(parents=True)
    shutil.copy(KB_SMALL / "taxonomy" / "nodes.yaml", base / "taxonomy" / "nodes.yaml")
    (base / "papers").mkdir()
    return base


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under papers/ by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted((root / "papers").iterdir())}


def papers_by_title(root: Path) -> dict[str, Paper]:
    """Load the KB (it must be valid) and index papers by title."""
    kb = kbtool.load(root)
    return {p.title: p for p in kb.papers.values()}


def by_arxiv(root: Path, arxiv_id: str) -> Paper:
    """The paper with an arXiv id."""
    found = kbtool.load(root).get(arxiv_id)
    assert isinstance(found, Paper)
    return found


# --- parsing and venues ------------------------------------------------------------------------
def test_parse_reads_only_taxonomy_sections() -> None:
    """18 rows under known nodes; the 'Summary Table' heading and prose are ignored."""
    parsed = parse_awesome(V1, {n.id for n in kbtool.load(KB_SMALL).nodes.values()})
    assert len(parsed.rows) == 18
    assert [r.node for r in parsed.rows].count("feedback") == 4
    assert {r.node for r in parsed.rows} == {
        "labeling",
        "feature",
        "feedback",
        "self-knowledge",
        "divergence-and-similarity",
        "reinforcement-learning",
        "rag-capability",
        "preference",
    }
    assert not any("not a taxonomy node" in r.title for r in parsed.rows)
    minillm = next(r for r in parsed.rows if r.title.startswith("MiniLLM"))
    assert (minillm.arxiv_id, minillm.year, minillm.month, minillm.venue) == (
        "2306.08543",
        2023,
        6,
        "ICLR",
    )
    assert minillm.code == ("https://github.com/microsoft/LMOps/tree/main/minillm",)


def test_parse_links_with_space_before_parenthesis() -> None:
    """'[Github](https://...    )' is a valid markdown link: the URL must not be dropped."""
    parsed = parse_awesome(V1, {"self-knowledge"})
    rewarding = next(r for r in parsed.rows if r.title == "Self-Rewarding Language Models")
    assert rewarding.code == (
        "https://github.com/lucidrains/self-rewarding-lm-pytorch?tab=readme-ov-file",
    )


def test_parse_reports_unbold_and_unlinked_titles() -> None:
    """Rows without bold or without a link are kept and noted."""
    text = (
        "#### Labeling\n| Title | Venue | Date | Code | Data |\n|:--|:--:|:--:|:--:|:--:|\n"
        "| Code Alpaca: An Instruction-following LLaMA model for code generation | - | 2023-03 | "
        "[Github](https://github.com/sahil280114/codealpaca)|\n"
    )
    parsed = parse_awesome(text, {"labeling"})
    assert len(parsed.rows) == 1 and parsed.rows[0].url is None and parsed.rows[0].bold is False
    assert any("not bold" in n for n in parsed.notes) and any("no link" in n for n in parsed.notes)


@pytest.mark.parametrize(
    "raw, venue",
    [
        ("EMNLP Findings", "Findings of EMNLP"),
        ("Findings of EMNLP", "Findings of EMNLP"),
        ("NIPS", "NeurIPS"),
        ("NIPS Workshop", "NeurIPS Workshop"),
        ("nips2023", "NeurIPS"),
        ("-", "Other"),
        ("arXiv preprint arXiv:2305.12870, 2023.", "arXiv"),
        ("The Twelfth International Conference on Learning Representations, {ICLR} 2024", "ICLR"),
        ("ICLR", "ICLR"),
        ("CoNLL", "CoNLL"),
    ],
)
def test_venue_normalisation(raw: str, venue: str) -> None:
    """One spelling per venue."""
    assert normalize_venue(raw) == venue


# --- import-awesome ----------------------------------------------------------------------------
def test_import_awesome_merges_and_reports(root: Path) -> None:
    """12 papers from 18 rows, merged across sections, with every quirk reported."""
    report = import_awesome(root, V1, source_name="awesome_v1.md")
    assert (report.rows, report.papers_in_list, len(report.added), report.updated) == (
        18,
        12,
        12,
        [],
    )
    papers = papers_by_title(root)
    assert len(papers) == 12

    # one paper in several sections: one file, every node, links once
    minillm = by_arxiv(root, "2306.08543")
    assert minillm.nodes == ["feature", "feedback", "divergence-and-similarity"]
    assert minillm.code == ["https://github.com/microsoft/LMOps/tree/main/minillm"]
    assert len(minillm.source.awesome_list) == 3
    assert by_arxiv(root, "2402.12842").nodes == ["feature", "feedback"]

    # title spelling variant behind one arXiv link: merged, correct title, reported
    constitutional = by_arxiv(root, "2212.08073")
    assert constitutional.title == CONSTITUTIONAL
    assert constitutional.nodes == ["feedback", "preference"]
    assert {s.title for s in constitutional.source.awesome_list} == {
        "Consitutional AI: Harmlessness from AI Feedback",
        CONSTITUTIONAL,
    }
    assert "Consitutional AI: Harmlessness from AI Feedback" not in papers
    almost = by_arxiv(root, "2305.13735")
    assert almost.title == ALMOST and almost.nodes == ["reinforcement-learning", "preference"]
    variants = [c for c in report.conflicts if c.startswith("title variants")]
    assert len(variants) == 2
    assert any("Consitutional" in c and "Constitutional" in c for c in variants)
    assert any("Synthetic Feedbacks" in c for c in variants)

    # one arXiv link on two different papers: reported, only the first keeps it
    shared = [c for c in report.conflicts if "2306.14050" in c]
    assert len(shared) == 1 and "2 different titles" in shared[0]
    assert papers[SYMBOLIC].arxiv_id == "2306.14050"
    assert papers[SELF_IMPROVEMENT].arxiv_id is None and papers[SELF_IMPROVEMENT].url is None

    # a row repeated inside one table: reported once, one paper, one node
    repeats = [c for c in report.conflicts if c.startswith("row repeated")]
    assert len(repeats) == 1 and "divergence-and-similarity" in repeats[0] and F_DIV in repeats[0]
    assert papers[F_DIV].nodes == ["divergence-and-similarity"]
    assert len(report.conflicts) == 4

    # venues normalised
    assert by_arxiv(root, "2402.12842").venue == "Findings of EMNLP"
    assert by_arxiv(root, "2305.18395").venue == "NeurIPS"
    assert by_arxiv(root, "2212.08073").venue == "arXiv"
    # the printed row is kept as provenance
    assert by_arxiv(root, "2305.18395").source.awesome_list[0].venue == "NIPS"

    assert almost.data == ["https://github.com/naver-ai/almost"]

    # the report file
    text = (root / "papers" / REPORT_NAME).read_text(encoding="utf-8")
    assert "## Conflicts (4)" in text and "- table rows read: 18" in text


def test_import_keeps_links_printed_with_a_space_before_the_parenthesis(root: Path) -> None:
    """'[Github](https://...    )' and '[Data](https://... )' links reach the paper files."""
    import_awesome(root, V2, source_name="awesome_v2.md")
    assert by_arxiv(root, "2401.10020").code == [
        "https://github.com/lucidrains/self-rewarding-lm-pytorch?tab=readme-ov-file"
    ]
    assert by_arxiv(root, "2308.02019").data == ["https://github.com/timinar/BabyLlama"]


def test_import_awesome_is_idempotent(root: Path) -> None:
    """A second run on the same list adds and updates nothing; files are byte-identical."""
    import_awesome(root, V1, source_name="awesome_v1.md")
    before = snapshot(root)
    report = import_awesome(root, V1, source_name="awesome_v1.md")
    assert report.added == [] and report.updated == [] and not report.changed
    assert snapshot(root) == before


def test_newer_list_adds_exactly_the_new_row(root: Path) -> None:
    """The list gains one row: that paper is added and nothing else changes."""
    import_awesome(root, V1, source_name="awesome.md")
    before = snapshot(root)
    report = import_awesome(root, V2, source_name="awesome.md")
    assert report.updated == []
    assert len(report.added) == 1
    new = kbtool.load(root).papers[report.added[0]]
    assert new.arxiv_id == "2308.02019" and new.title.startswith("Baby Llama")
    assert new.nodes == ["feature"] and new.venue == "CoNLL" and (new.year, new.month) == (2023, 8)
    assert new.code == ["https://github.com/timinar/BabyLlama"]
    after = snapshot(root)
    assert set(after) - set(before) == {f"{new.id}.yaml"}
    assert {k: v for k, v in after.items() if k in before and k != REPORT_NAME} == {
        k: v for k, v in before.items() if k != REPORT_NAME
    }


def test_import_awesome_preserves_hand_edits(root: Path) -> None:
    """Facts added by hand (here: teachers) survive a re-import."""
    import_awesome(root, V1, source_name="awesome.md")
    minillm = by_arxiv(root, "2306.08543")
    path = root / "papers" / f"{minillm.id}.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("teachers: []", "teachers:\n  - GPT2"),
        encoding="utf-8",
    )
    report = import_awesome(root, V1, source_name="awesome.md")
    assert report.updated == []
    assert by_arxiv(root, "2306.08543").teachers == ["GPT2"]


def test_new_section_for_an_existing_paper_updates_it(root: Path) -> None:
    """A known paper listed under one more node is updated, not duplicated."""
    import_awesome(root, V1, source_name="awesome.md")
    row = next(line for line in V1.splitlines() if "MiniLLM" in line)
    extra = V1.replace("#### Self-Knowledge\n", f"#### Labeling\n{row}\n#### Self-Knowledge\n", 1)
    before = len(kbtool.load(root).papers)
    report = import_awesome(root, extra, source_name="awesome.md")
    minillm = by_arxiv(root, "2306.08543")
    assert report.added == [] and report.updated == [minillm.id]
    assert minillm.nodes == ["feature", "feedback", "divergence-and-similarity", "labeling"]
    assert len(kbtool.load(root).papers) == before


def test_shared_arxiv_link_owner_comes_from_metadata(root: Path) -> None:
    """When the wrong title comes first, the metadata decides who owns the arXiv id."""
    rows = [line for line in V1.splitlines() if "2306.14050" in line]
    assert len(rows) == 2
    header = "| Title | Venue | Date | Code | Data |\n|:--|:--:|:--:|:--:|:--:|\n"
    text = f"#### Self-Knowledge\n{header}{rows[1]}\n#### Labeling\n{header}{rows[0]}\n"
    meta = load_metadata(IMPORTER / "metadata.jsonl")
    report = import_awesome(root, text, source_name="x.md", meta=meta, write_report=False)
    assert len(report.added) == 2
    papers = papers_by_title(root)
    assert papers[SYMBOLIC].arxiv_id == "2306.14050"
    assert papers[SELF_IMPROVEMENT].arxiv_id is None
    assert not (root / "papers" / REPORT_NAME).exists()


def test_venue_disagreement_is_reported(root: Path) -> None:
    """Rows of one paper with different venues: the specific venue wins and it is reported."""
    header = "| Title | Venue | Date | Code | Data |\n|:--|:--:|:--:|:--:|:--:|\n"
    row = "| [**A Test Paper on KD**](https://arxiv.org/abs/2401.00001) | {venue} | 2024-01 |\n"
    text = (
        f"#### Labeling\n{header}{row.format(venue='arXiv')}"
        f"#### Feature\n{header}{row.format(venue='ICLR')}"
    )
    report = import_awesome(root, text, source_name="x.md")
    paper = by_arxiv(root, "2401.00001")
    assert paper.venue == "ICLR" and paper.nodes == ["labeling", "feature"]
    assert any("venue differs" in c and "ICLR" in c and "arXiv" in c for c in report.conflicts)


def test_import_tolerates_methods_naming_papers_not_yet_imported(root: Path) -> None:
    """Method nodes may name introducing papers that the import is about to create."""
    shutil.copytree(KB_SMALL / "taxonomy" / "methods", root / "taxonomy" / "methods")
    report = import_awesome(root, V1, source_name="x.md")
    assert len(report.added) == 12


def test_import_refuses_an_invalid_kb(root: Path) -> None:
    """Importing into a broken KB writes nothing and lists the problems."""
    (root / "taxonomy" / "nodes.yaml").write_text("nodes: [\n", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError):
        import_awesome(root, V1, source_name="x.md")
    assert list((root / "papers").iterdir()) == []


# --- import-metadata ---------------------------------------------------------------------------
def test_import_metadata_adds_cited_only_works(root: Path) -> None:
    """Works cited by the survey but absent from the list become unplaced, cited papers."""
    import_awesome(root, V1, source_name="awesome.md")
    in_list = set(kbtool.load(root).papers)
    report = import_metadata(root, load_metadata(IMPORTER / "metadata.jsonl"))
    kb = kbtool.load(root)
    added = {kb.papers[i].title: kb.papers[i] for i in report.added}
    assert set(added) == {
        "Sequence-level knowledge distillation",
        "Training language models to follow instructions with human feedback",
        "Baby Llama: Knowledge Distillation from an Ensemble of Teachers Trained on a Small "
        "Dataset with No Performance Penalty",
    }
    for paper in added.values():
        assert paper.nodes == [] and paper.cited_by_survey is True and paper.id not in in_list
    seqkd = added["Sequence-level knowledge distillation"]
    assert (seqkd.id, seqkd.year, seqkd.month, seqkd.venue) == ("kim2016sequence", 2016, 6, "arXiv")
    assert seqkd.authors == ["Yoon Kim", "Alexander M. Rush"] and seqkd.source.survey_refs == [147]
    instruct = added["Training language models to follow instructions with human feedback"]
    assert (instruct.year, instruct.venue, instruct.arxiv_id) == (2022, "NeurIPS", "2203.02155")
    # the list paper without survey references is not added but noted
    assert any("Reflection-Tuning" in n and "not found" in n for n in report.notes)


def test_import_metadata_fills_list_papers(root: Path) -> None:
    """Authors, provenance and survey references reach the papers from the list."""
    import_awesome(root, V1, source_name="awesome.md")
    import_metadata(root, load_metadata(IMPORTER / "metadata.jsonl"))
    minillm = by_arxiv(root, "2306.08543")
    assert minillm.authors == ["Yuxian Gu", "Li Dong", "Furu Wei", "Minlie Huang"]
    assert minillm.source.metadata == "dblp" and minillm.source.survey_refs == [17]
    assert minillm.cited_by_survey is True
    symbolic = by_arxiv(root, "2306.14050")
    assert symbolic.authors[-1] == "Y. Choi"  # "and Y. Choi" of the reference list cleaned
    assert by_arxiv(root, "2402.12842").cited_by_survey is False  # no survey reference
    # the paper wrongly linked to 2306.14050 must not receive that id
    assert papers_by_title(root)[SELF_IMPROVEMENT].arxiv_id is None


def test_import_metadata_is_idempotent(root: Path) -> None:
    """A second run changes nothing, byte for byte."""
    import_awesome(root, V1, source_name="awesome.md")
    meta = load_metadata(IMPORTER / "metadata.jsonl")
    import_metadata(root, meta)
    before = snapshot(root)
    report = import_metadata(root, meta)
    assert report.added == [] and report.updated == []
    assert snapshot(root) == before


def test_load_metadata_rejects_bad_lines(tmp_path: Path) -> None:
    """A line that is not a metadata object names the file and line."""
    path = tmp_path / "meta.jsonl"
    path.write_text('{"title": "ok"}\n\n{"no_title": 1}\n', encoding="utf-8")
    with pytest.raises(MetadataError, match=r"meta\.jsonl:3"):
        load_metadata(path)


# --- import-summary ----------------------------------------------------------------------------
EXPECTED_SUMMARY = {
    # arXiv id: (row, elicitation, objectives)
    "2305.12870": (1, ["labeling", "expansion", "feedback"], []),
    "2306.08543": (2, ["feature"], ["divergence-and-similarity"]),
    "2401.10020": (3, ["self-knowledge"], ["supervised-fine-tuning", "reinforcement-learning"]),
    "2305.15225": (4, ["labeling"], ["supervised-fine-tuning"]),
    "2305.18395": (5, ["labeling"], ["supervised-fine-tuning", "divergence-and-similarity"]),
    "2305.13735": (
        6,
        ["expansion", "labeling"],
        ["supervised-fine-tuning", "reinforcement-learning"],
    ),
    "2212.08073": (
        7,
        ["labeling", "expansion", "feedback"],
        ["supervised-fine-tuning", "reinforcement-learning"],
    ),
    "2312.10730": (8, ["labeling"], ["supervised-fine-tuning"]),
}


@pytest.fixture
def imported(root: Path) -> Path:
    """The KB after importing the list excerpt and the metadata excerpt."""
    import_awesome(root, V1, source_name="awesome.md")
    import_metadata(root, load_metadata(IMPORTER / "metadata.jsonl"))
    return root


def test_import_summary_attaches_normalised_facts(imported: Path) -> None:
    """Label/IK/Self-Distillation mapped to node ids; 'SFT + RL' and 'SFT+RL' split."""
    report = import_summary(imported, SUMMARY)
    assert report.unmatched == [] and len(report.attached) == 8
    for arxiv_id, (row, elicitation, objectives) in EXPECTED_SUMMARY.items():
        paper = by_arxiv(imported, arxiv_id)
        assert report.attached[row] == paper.id
        assert paper.elicitation == elicitation, arxiv_id
        assert paper.objectives == objectives, arxiv_id
        assert [r.row for r in paper.source.summary_table] == [row]
    kard = by_arxiv(imported, "2305.18395")
    assert kard.teachers == ["ChatGPT"] and kard.students == ["T5", "OPT"]
    assert kard.skills == ["Instruction Following", "Retrieval-Augmented Generation"]
    assert kard.seed_knowledge == ["MedQAUSMLE"]
    minillm = by_arxiv(imported, "2306.08543")
    assert minillm.teachers == ["GPT-2", "OPT", "LLaMA"]  # model names get one spelling
    assert minillm.source.summary_table[0].printed["teacher"] == "GPT2 + OPT + LLaMA"


def test_import_summary_keeps_printed_typos(imported: Path) -> None:
    """Typos are fixed in the data and the printed cell is kept as provenance."""
    import_summary(imported, SUMMARY)
    lion = by_arxiv(imported, "2305.12870")
    assert lion.seed_knowledge == ["Alpaca Data"]
    assert lion.source.summary_table[0].printed == {"seed_knowledge": "Alpaca Cata"}
    mixed = by_arxiv(imported, "2312.10730")
    assert mixed.students == ["LLaMA"]
    assert mixed.source.summary_table[0].printed == {"student": "LLaMa"}
    kard = by_arxiv(imported, "2305.18395")  # printed exactly as stored: no provenance entry
    assert kard.source.summary_table[0].printed == {}
    assert "printed" not in (imported / "papers" / f"{kard.id}.yaml").read_text(encoding="utf-8")


def test_import_summary_is_idempotent(imported: Path) -> None:
    """A second run changes nothing, byte for byte."""
    import_summary(imported, SUMMARY)
    before = snapshot(imported)
    report = import_summary(imported, SUMMARY)
    assert report.updated == [] and len(report.attached) == 8
    assert snapshot(imported) == before


def test_import_summary_reports_unmatched_rows(root: Path) -> None:
    """Rows whose paper is not in the KB are listed, nothing is written."""
    report = import_summary(root, SUMMARY)
    assert len(report.unmatched) == 8 and report.attached == {}
    assert report.unmatched[0] == "row 1: Lion (Jiang et al., 2023b)"
    assert list((root / "papers").iterdir()) == []


def test_summary_header_is_checked() -> None:
    """A TSV with other columns is refused."""
    with pytest.raises(ValueError, match="unexpected columns"):
        parse_summary("method\tcitation\nMiniLLM\tGu et al., 2024\n")


def test_normalise_row_method_typo() -> None:
    """'InstrcutRec' (a printed typo of the method name) is fixed and kept as printed."""
    header = SUMMARY.splitlines()[0]
    line = (
        "NLP Task Specialization\tInstrcutRec\tZhang et al., 2023b\tRecommendation\t"
        "39 instruction templates\tChatGPT\tFlan-T5\tExpansion + Self-Distillation\tSFT"
    )
    (row,) = parse_summary(f"{header}\n{line}\n")
    facts, printed = normalise_row(row)
    assert printed == {"method": "InstrcutRec"}
    assert facts["elicitation"] == ["expansion", "self-knowledge"]
    assert facts["objectives"] == ["supervised-fine-tuning"]
    assert facts["skills"] == ["Recommendation"]
