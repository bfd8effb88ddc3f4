"""Placement signals beyond the k-NN vote (leaf texts, centroids, list headings), dates and
subtrees, and the temporal split of the evaluation script, on small hand-made knowledge bases."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
import typer
from typer.testing import CliRunner

import kbtool.retrieval.placement_features as features
from kbtool.cli.search import search_cmd, suggest_cmd
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import Records
from kbtool.core.model import Paper, TaxonomyNode
from kbtool.retrieval import placement

REPO = Path(__file__).resolve().parent.parent


def load_eval() -> ModuleType:
    path = REPO / "benchmarks" / "placement_eval.py"
    spec = importlib.util.spec_from_file_location("placement_eval_levels", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _node(id_: str, name: str, parent: str | None, order: int, text: str) -> TaxonomyNode:
    return TaxonomyNode(
        id=id_, name=name, parent=parent, description=text, order=order, origin="survey"
    )


NODES = [
    _node("algorithms", "Algorithms", None, 0, "How knowledge moves."),
    _node("elicitation", "Elicitation", "algorithms", 0, "Getting knowledge out."),
    _node("labeling", "Labeling", "elicitation", 0, "A teacher labels data for a student."),
    _node("self-knowledge", "Self-Knowledge", "elicitation", 1, "A model learns from itself."),
    _node("skills", "Skills", None, 1, "What the student learns."),
    _node("tool-using", "Tool Using", "skills", 0, "Calling external tools and APIs."),
]


def _paper(id_: str, title: str, nodes: list[str], year: int, month: int | None = None,
           arxiv: str | None = None) -> Paper:  # fmt: skip
    return Paper(
        id=id_, title=title, year=year, month=month, venue="arXiv", arxiv_id=arxiv, nodes=nodes
    )


def small_kb(tmp_path: Path, extra: list[Paper] | None = None) -> KnowledgeBase:
    papers = [
        _paper("p1", "Teacher annotated instruction data", ["labeling"], 2023, 4),
        _paper("p2", "Annotating questions with a large teacher", ["labeling"], 2024, 5),
        _paper("p3", "Calling web services from compact models", ["tool-using"], 2025, 1),
    ]
    return KnowledgeBase(Records(root=tmp_path, nodes=NODES, papers=papers + (extra or [])))


# --- dates and subtrees ----------------------------------------------------------------------
def test_paper_month_prefers_the_arxiv_id_then_year_and_month() -> None:
    assert features.paper_month(_paper("a", "t", [], 2025, 12, "2601.01234")) == "2026-01"
    assert features.paper_month(_paper("b", "t", [], 2024, 3)) == "2024-03"
    assert features.paper_month(_paper("c", "t", [], 2024)) is None


def test_split_by_month(tmp_path: Path) -> None:
    kb = small_kb(tmp_path, [_paper("y", "Year only", [], 2025), _paper("z", "t", [], 2026, 2)])
    assert sorted(features.papers_between(kb, "2024-05", "2025-01")) == ["p2", "p3"]
    # a paper known only by its year may be from December: it is not safely before 2025-06
    assert sorted(features.papers_from(kb, "2025-06")) == ["y", "z"]
    assert sorted(features.papers_from(kb, "2026-01")) == ["z"]


def test_subtree_is_the_child_of_the_pillar(tmp_path: Path) -> None:
    sub = features.subtree_of(small_kb(tmp_path))
    assert sub["labeling"] == sub["self-knowledge"] == "elicitation"
    assert sub["tool-using"] == "tool-using"  # a leaf right under its pillar
    assert sub["algorithms"] == "algorithms"


def test_subtree_ranking_sums_leaf_scores() -> None:
    subtree = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    ranking = [("b1", 0.5), ("a1", 0.3), ("a2", 0.3), ("c1", 0.0)]
    assert features.subtree_ranking(ranking, subtree) == [
        ("A", pytest.approx(0.6)),
        ("B", 0.5),
        ("C", 0.0),
    ]
    # a tie goes to the subtree whose best leaf is ranked first
    tied = features.subtree_ranking([("c1", 0.2), ("a1", 0.1), ("a2", 0.1)], subtree)
    assert [g for g, _ in tied] == ["C", "A"]


# --- the signals -----------------------------------------------------------------------------
def test_leaf_text_names_the_path_and_the_description(tmp_path: Path) -> None:
    text = features.leaf_text(small_kb(tmp_path), "self-knowledge")
    assert text == "Self-Knowledge (Algorithms, Elicitation): A model learns from itself."


def test_word_scores_are_shares_of_bm25(tmp_path: Path) -> None:
    kb = small_kb(tmp_path)
    order = placement.leaves(kb)
    tools, nothing = features.word_scores(kb, ["external tools", "zzz qqq"], order)
    assert set(tools) == {"tool-using"} and tools["tool-using"] == pytest.approx(1.0)
    assert nothing == {}
    both = features.word_scores(kb, ["teacher model itself"], order)[0]
    assert sum(both.values()) == pytest.approx(1.0)
    assert set(both) == {"labeling", "self-knowledge"}


def test_section_scores_read_the_last_heading_only(tmp_path: Path) -> None:
    kb = small_kb(tmp_path)
    order = placement.leaves(kb)
    assert features.headings(["Tools > Self-Knowledge", " Labeling ", "Labeling"]) == [
        "Self-Knowledge",
        "Labeling",
    ]
    scores = features.section_scores(kb, ["Tools > Self-Knowledge", "Misc > Labeling"], order)
    assert scores == {"self-knowledge": pytest.approx(0.5), "labeling": pytest.approx(0.5)}
    assert features.section_scores(kb, [], order) == {}


def test_centroid_scores_by_hand() -> None:
    paper_emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    weights = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # leaf 2: none
    probs = features.centroid_scores(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), paper_emb, weights)
    # centroid of leaf 0 = (1.8, 0.6)/|.| = (0.949, 0.316); of leaf 1 = (0, 1)
    expected = torch.softmax(torch.tensor([[0.316228, 1.0], [0.948683, 0.0]]) / 0.05, dim=1)
    assert probs[:, :2] == pytest.approx(expected, abs=1e-4)
    assert probs[:, 2].tolist() == [0.0, 0.0]
    nothing = features.centroid_scores(torch.ones(1, 2), paper_emb, torch.zeros(3, 3))
    assert nothing.tolist() == [[0.0, 0.0, 0.0]]


def test_mixture_weights() -> None:
    wc, wt, ww, ws = (
        features.WEIGHT_CENTROID,
        features.WEIGHT_TEXT,
        features.WEIGHT_WORDS,
        features.WEIGHT_SECTIONS,
    )
    knn = {"x": {"a": 0.5}}
    vote, extra = placement.mixture(knn, None, {"y": 1.0}, {})
    assert vote == {"x": {"a": pytest.approx(0.5 * (1 - ww))}}
    assert extra == {"y": pytest.approx(ww)}
    vote, extra = placement.mixture(knn, {"x": 0.1}, {"y": 1.0}, {"z": 1.0})
    assert vote == {"x": {"a": pytest.approx(0.5 * (1 - ww - wc - wt) * (1 - ws))}}
    assert extra == {
        "x": pytest.approx(0.1 * (1 - ws)),
        "y": pytest.approx(ww * (1 - ws)),
        "z": pytest.approx(ws),
    }


# --- behaviour of suggest --------------------------------------------------------------------
def test_a_new_topic_with_no_placed_neighbour_is_found_from_the_leaf_text(
    tmp_path: Path,
) -> None:
    kb = small_kb(tmp_path)
    found = placement.suggest(kb, "It learns from itself", k=3, method="lexical")
    assert found[0].node == "self-knowledge"
    assert found[0].evidence == ()  # no placed paper stands behind it
    assert all(0.0 <= s.score <= 1.0 for s in found)


def test_list_sections_steer_the_suggestion(tmp_path: Path) -> None:
    kb = small_kb(tmp_path)
    title = "Zyxw qwvu"  # shares no word with any paper or leaf
    assert placement.suggest(kb, title, k=1, method="lexical")[0].node == "labeling"  # prior
    steered = placement.suggest(
        kb, title, k=1, method="lexical", sections=["Surveys > Tool Use > External Tools"]
    )
    assert steered[0].node == "tool-using"
    many = placement.suggest_many(
        kb, [(title, None), (title, None)], k=1, method="lexical", sections=[[], ["Self"]]
    )
    assert [m[0].node for m in many] == ["labeling", "self-knowledge"]
    with pytest.raises(ValueError, match="1 section lists for 2 queries"):
        placement.suggest_many(kb, [(title, None)] * 2, method="lexical", sections=[[]])


def test_suggest_command_takes_sections() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("search")(search_cmd)
    app.command("suggest")(suggest_cmd)
    runner = CliRunner(env={"COLUMNS": "1000"})
    args = ["suggest", "--title", "Zyxw qwvu", "--method", "lexical", "-k", "1", "--format", "json"]
    plain = runner.invoke(app, args)
    steered = runner.invoke(app, [*args, "--section", "Surveys > Agents > Tool Using"])
    assert plain.exit_code == 0 and steered.exit_code == 0, steered.output
    assert '"node": "tool-using"' not in plain.stdout
    assert '"node": "tool-using"' in steered.stdout
    both = runner.invoke(app, ["suggest", "--from-awesome", "x.md", "--section", "A"])
    assert both.exit_code == 1 and "go with --title" in both.stderr


# --- the evaluation's temporal split and levels ----------------------------------------------
def test_temporal_split_uses_only_older_placements(tmp_path: Path) -> None:
    ev = load_eval()
    newer = [
        _paper("t1", "Calling web services from teacher models", ["labeling"], 2026, 2),
        # a later twin of t1 on another leaf: it must not be a neighbour of t1
        _paper("t2", "Calling web services from teacher models", ["self-knowledge"], 2026, 7),
    ]
    kb = small_kb(tmp_path, newer)
    ranked = ev.temporal_rankings(
        kb, "2026-01", "2026-05", method="lexical", neighbours=10, sections=None
    )
    assert list(ranked) == ["t1"]
    leaves_ranked = [leaf for leaf, _ in ranked["t1"]]
    assert leaves_ranked[0] == "tool-using"  # p3's words, not t2's leaf
    assert leaves_ranked.index("self-knowledge") == 2
    subtree = features.subtree_of(kb)
    report = ev.two_levels(ranked, {"t1": {"labeling"}}, subtree)
    assert report["leaf"]["hit@1"] == 0.0 and report["leaf"]["hit@3"] == 1.0
    # subtrees: tool-using alone, elicitation = labeling + self-knowledge
    assert report["subtree"]["n"] == 1 and report["subtree"]["hit@3"] == 1.0
    assert ev.temporal_rankings(kb, "2027-01", "2027-05", method="lexical", neighbours=10) == {}


def test_levels_table_prints_n_and_percentages() -> None:
    ev = load_eval()
    scores = {"n": 4, "hit@1": 0.25, "hit@3": 0.75, "recall@3": 0.5}
    row = {"evaluation": "leave-one-out", "method": "hybrid", "input": "title"}
    table = ev.levels_markdown([row | {"leaf": scores, "subtree": scores | {"hit@1": 0.5}}])
    assert (
        table.splitlines()[-1] == "| leave-one-out | hybrid | title | 4 | 25% | 75% | 50% | 75% |"
    )


def test_read_sections(tmp_path: Path) -> None:
    ev = load_eval()
    path = tmp_path / "src.jsonl"
    path.write_text(
        '{"arxiv_id": "2601.00001", "list_sections": [{"repo": "r", "section": "A > B"}]}\n'
        '\n{"arxiv_id": "2601.00002", "list_sections": []}\n',
        encoding="utf-8",
    )
    assert ev.read_sections(path) == {"2601.00001": ["A > B"], "2601.00002": []}
