"""Placement suggestions: the k-NN vote on hand-made cases, leave-one-out masking, held-out
real papers, triage of a newer list, and the evaluation script's metrics."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import torch
import typer
from typer.testing import CliRunner

import kbtool
from kbtool.cli.search import search_cmd, suggest_cmd
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import Records
from kbtool.core.model import NodeOrigin, Paper, TaxonomyNode
from kbtool.retrieval import leave_one_out, placement, semantic, triage

REPO = Path(__file__).resolve().parent.parent

# Clear single-topic papers from different pillars, none of them cited by a method node (so the
# knowledge base stays valid without them). They are held out of the fixture below; the overall
# rate on all placed papers is what benchmarks/placement_eval.py measures.
HELD_OUT = {
    "chen2023huatuogpt": "medical-healthcare",
    "su2023distilled": "code",
    "kim2023prometheus": "text-generation-evaluation",
    "siyu2024easytool": "tool-using",
    "sun2023instructdistill": "information-retrieval",
    "lin2024geogalactica": "science",
}


def load_eval() -> ModuleType:
    path = REPO / "benchmarks" / "placement_eval.py"
    spec = importlib.util.spec_from_file_location("placement_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeEncoder:
    """Deterministic unit vectors seeded by each text's hash (batch-independent)."""

    fingerprint = "fake-encoder/placement"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
            v = torch.randn(16, generator=torch.Generator().manual_seed(seed))
            rows.append(v / v.norm())
        return torch.stack(rows) if rows else torch.zeros(0, 16)


# --- the vote on hand-made cases -------------------------------------------------------------
def test_vote_scores_worked_by_hand() -> None:
    targets = {"a": {"x": 1.0}, "b": {"x": 1.0, "y": 1.0}, "c": {"z": 1.0}, "d": {"w": 1.0}}
    neighbours = [("a", 0.8), ("b", 0.4), ("c", -0.2)]  # c's negative similarity counts as 0
    ranked = placement.rank_leaves(neighbours, targets, ["w", "x", "y", "z"], {"z": 5.0})
    # total = 0.8 + 0.4 = 1.2; x = 1.2 / 1.2; y = 0.4 / 1.2; z and w: 0, z first by prior
    assert ranked == [
        ("x", pytest.approx(1.0)),
        ("y", pytest.approx(1 / 3)),
        ("z", 0.0),
        ("w", 0.0),
    ]
    shares = placement.votes(neighbours, targets)
    assert shares == {
        "x": {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3)},
        "y": {"b": pytest.approx(1 / 3)},
    }


def test_no_similarity_at_all_falls_back_to_the_prior() -> None:
    ranked = placement.rank_leaves([("a", 0.0)], {"a": {"x": 1.0}}, ["x", "y"], {"y": 2.0})
    assert ranked == [("y", 0.0), ("x", 0.0)]


def test_average_votes_halves_each_method_and_adds_shared_papers() -> None:
    emb = {"x": {"a": 0.6}, "y": {"b": 0.4}}
    lex = {"x": {"a": 0.2, "c": 0.8}}
    assert placement.average_votes([emb, lex]) == {
        "x": {"a": pytest.approx(0.4), "c": pytest.approx(0.4)},
        "y": {"b": pytest.approx(0.2)},
    }


def _node(id_: str, parent: str | None, order: int) -> TaxonomyNode:
    return TaxonomyNode(
        id=id_,
        name=id_.title(),
        parent=parent,
        description="d",
        order=order,
        origin=NodeOrigin.SURVEY,
    )


def _ancestors(kb: KnowledgeBase, node: str) -> list[str]:
    """The nodes above ``node`` (a paper on an inner node votes for every leaf below it)."""
    out, parent = [], kb.nodes[node].parent
    while parent is not None:
        out.append(parent)
        parent = kb.nodes[parent].parent
    return out


def _paper(id_: str, title: str, nodes: list[str]) -> Paper:
    return Paper(id=id_, title=title, year=2024, venue="arXiv", nodes=nodes)


def test_a_paper_on_an_inner_node_is_spread_over_its_leaves(tmp_path: Path) -> None:
    nodes = [
        _node("pillar", None, 0),
        _node("group", "pillar", 0),
        _node("leaf-a", "group", 0),
        _node("leaf-b", "group", 1),
        _node("leaf-c", "pillar", 1),
    ]
    papers = [
        _paper("p1", "one", ["group"]),
        _paper("p2", "two", ["leaf-a", "group"]),
        _paper("p3", "three", ["leaf-c"]),
        _paper("p4", "four", []),
    ]
    kb = KnowledgeBase(Records(root=tmp_path, nodes=nodes, papers=papers))
    assert placement.leaves(kb) == ["leaf-a", "leaf-b", "leaf-c"]
    assert placement.leaf_targets(kb) == {
        "p1": {"leaf-a": 0.5, "leaf-b": 0.5},
        "p2": {"leaf-a": 1.0, "leaf-b": 0.5},
        "p3": {"leaf-c": 1.0},
    }
    assert placement.leaf_prior(placement.leaf_targets(kb), exclude={"p2"}) == {
        "leaf-a": 0.5,
        "leaf-b": 0.5,
        "leaf-c": 1.0,
    }


# --- the real knowledge base -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled() -> KnowledgeBase:
    return kbtool.load()


@pytest.fixture(scope="module")
def held_out_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    """The bundled knowledge base (real placed papers) without the papers of HELD_OUT."""
    root = tmp_path_factory.mktemp("held-out") / "kb"
    shutil.copytree(REPO / "taxonomy", root / "taxonomy")
    shutil.copytree(REPO / "papers", root / "papers")
    for pid in HELD_OUT:
        (root / "papers" / f"{pid}.yaml").unlink()
    return kbtool.load(root)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.getbasetemp() / "kbtool-embedding-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(semantic.CACHE_ENV, str(path))
        yield path


def test_held_out_papers_are_truly_single_leaf_and_unreferenced(bundled: KnowledgeBase) -> None:
    cited = {pid for m in bundled.methods.values() for pid in m.papers}
    for pid, leaf in HELD_OUT.items():
        assert bundled.papers[pid].nodes == [leaf]
        assert pid not in cited


@pytest.mark.parametrize("method", ["auto", "lexical"])
def test_suggestions_for_removed_papers_include_their_true_leaf(
    held_out_kb: KnowledgeBase, bundled: KnowledgeBase, shared_cache: Path, method: str
) -> None:
    queries = [(bundled.papers[pid].title, None) for pid in HELD_OUT]
    found = placement.suggest_many(held_out_kb, queries, k=3, method=method)  # type: ignore[arg-type]
    for (pid, leaf), suggestions in zip(HELD_OUT.items(), found, strict=True):
        assert pid not in held_out_kb.papers
        ranked = [s.node for s in suggestions]
        assert leaf in ranked, (pid, ranked)
        scores = [s.score for s in suggestions]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        for s in suggestions:
            assert sum(e.share for e in s.evidence) <= s.score + 1e-9
            for e in s.evidence:  # evidence papers are placed in the leaf or above it
                placed = held_out_kb.papers[e.paper_id].nodes
                assert set(placed) & {s.node, *_ancestors(held_out_kb, s.node)}, placed


def test_suggest_accepts_an_abstract_and_validates(bundled: KnowledgeBase) -> None:
    found = placement.suggest(
        bundled,
        "A small model for doctors",
        abstract="We distil a clinical question answering model for hospitals and patients.",
        k=2,
        method="lexical",
    )
    assert len(found) == 2
    with pytest.raises(ValueError, match="title is empty"):
        placement.suggest(bundled, "  ", method="lexical")
    with pytest.raises(ValueError, match="unknown method"):
        placement.suggest(bundled, "x", method="magic")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["lexical", "embedding"])
def test_leave_one_out_equals_suggesting_with_the_paper_excluded(
    bundled: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.setenv(semantic.CACHE_ENV, str(tmp_path))
    enc = FakeEncoder()
    loo = leave_one_out.leave_one_out(bundled, method=method, encoder=enc)  # type: ignore[arg-type]
    assert set(loo) == set(placement.leaf_targets(bundled))
    for pid in list(loo)[::40]:
        found = placement.suggest(
            bundled,
            bundled.papers[pid].title,
            k=5,
            method=method,  # type: ignore[arg-type]
            exclude={pid},
            encoder=enc,
        )
        assert [s.node for s in found] == [leaf for leaf, _ in loo[pid][:5]]
        assert [s.score for s in found] == pytest.approx([s for _, s in loo[pid][:5]])


# --- triage of a newer list ------------------------------------------------------------------
def _row(title: str, url: str, date: str) -> str:
    return f"| [**{title}**]({url}) | arXiv | {date} | | |"


O1 = "Distilling o1-like Long Chain-of-Thought Reasoning into Small Models"
CLINICAL = "A Distilled Clinical Assistant for Radiology Reports"
TABLE_HEAD = "| Title | Venue | Date | Code | Data |\n|:--|:--:|:--:|:--:|:--:|"
NEWER_LIST = "\n".join(
    [
        "# A newer list",
        "## KD Algorithms",
        "### Knowledge Elicitation",
        "#### Labeling",
        TABLE_HEAD,
        _row(
            "MiniLLM: Knowledge Distillation of Large Language Models",
            "https://arxiv.org/abs/2306.08543",
            "2023-06",
        ),
        _row(
            "Minillm: knowledge distilation of large language models", "https://x.org/", "2023-06"
        ),
        _row(O1, "https://arxiv.org/abs/2599.00001", "2025-09"),
        "## Verticalization Distillation",
        "### Medical & Healthcare",
        TABLE_HEAD,
        _row(O1, "https://arxiv.org/abs/2599.00001", "2025-09"),
        _row(CLINICAL, "https://arxiv.org/abs/2599.00002", "2025-10"),
    ]
)


def test_triage_reports_only_missing_papers_once_each(bundled: KnowledgeBase) -> None:
    items = triage.triage_awesome(bundled, NEWER_LIST, k=3, method="lexical")
    assert [(i.title, i.listed_under) for i in items] == [
        (O1, ("labeling", "medical-healthcare")),
        (CLINICAL, ("medical-healthcare",)),
    ]
    assert all(len(i.suggestions) == 3 for i in items)


def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("search")(search_cmd)
    app.command("suggest")(suggest_cmd)
    return app


def test_suggest_command_from_awesome_and_title(bundled: KnowledgeBase, tmp_path: Path) -> None:
    newer = tmp_path / "newer.md"
    newer.write_text(NEWER_LIST, encoding="utf-8")
    runner = CliRunner(env={"COLUMNS": "1000"})
    result = runner.invoke(cli(), ["suggest", "--from-awesome", str(newer), "--method", "lexical"])
    assert result.exit_code == 0, result.output
    assert "2 paper(s) of the list are not in the knowledge base" in result.stdout
    assert "MiniLLM" not in result.stdout
    result = runner.invoke(
        cli(),
        ["suggest", "--title", "HuatuoGPT for medicine", "--method", "lexical", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert '"node": "medical-healthcare"' in result.stdout
    result = runner.invoke(cli(), ["suggest", "--title", "x", "--from-awesome", str(newer)])
    assert result.exit_code == 1 and "either --title" in result.stderr


# --- the evaluation script's metrics ---------------------------------------------------------
def test_recall_and_hit_rate_on_a_tiny_hand_made_case() -> None:
    ev = load_eval()
    pillar_of = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    rankings = {
        "p": ["a2", "b1", "a1", "b2"],  # truth {a1}: miss at 1, hit at 3
        "q": ["b1", "a1", "a2", "b2"],  # truth {b1, a2}: hit at 1; top-3 holds both
        "r": ["a1", "a2", "b2", "b1"],  # truth {b1}: miss at 1 and at 3
    }
    truths = {"p": {"a1"}, "q": {"b1", "a2"}, "r": {"b1"}}
    assert ev.hit_at_k(rankings["p"], truths["p"], 1) == 0.0
    assert ev.hit_at_k(rankings["p"], truths["p"], 3) == 1.0
    assert ev.recall_at_k(rankings["q"], truths["q"], 1) == 0.5
    report = ev.evaluate(rankings, truths, pillar_of)
    assert report["overall"] == {
        "n": 3,
        "hit@1": pytest.approx(1 / 3),
        "hit@3": pytest.approx(2 / 3),
        "recall@3": pytest.approx((1 + 1 + 0) / 3),
    }
    # pillar A: p (ranking a2, a1; truth a1) and q (ranking a1, a2; truth a2)
    assert report["A"] == {"n": 2, "hit@1": 0.0, "hit@3": 1.0, "recall@3": 1.0}
    # pillar B: q (ranking b1, b2; truth b1) and r (ranking b2, b1; truth b1)
    assert report["B"] == {"n": 2, "hit@1": 0.5, "hit@3": 1.0, "recall@3": 1.0}


def test_baseline_rankings_on_a_tiny_case() -> None:
    ev = load_eval()
    targets = {"p": {"x": 1.0}, "q": {"x": 1.0, "y": 1.0}, "r": {"y": 1.0}, "s": {"y": 1.0}}
    order = ["x", "y", "z"]
    # without p: x 1, y 3; without s: x 2, y 2 (tie: taxonomy order)
    majority = ev.majority_rankings(targets, order)
    assert majority["p"] == ["y", "x", "z"]
    assert majority["s"] == ["x", "y", "z"]
    ranking = ev.first_neighbour_ranking(
        [("r", 0.9), ("q", 0.5), ("p", 0.0)], targets, order, {"x": 9.0}
    )
    assert ranking == ["y", "x", "z"]  # r's leaf, then q's new leaf x; p (0.0) never counts


def test_tfidf_baseline_neighbours_are_leave_one_out() -> None:
    ev = load_eval()  # needs scikit-learn (installed with the semantic extra and the test extra)
    titles = {"a": "distilling reasoning", "b": "distilling reasoning models", "c": "graph data"}
    near = ev.tfidf_neighbours(titles)
    assert [pid for pid, _ in near["a"]][0] == "b"
    assert all(pid != "a" for pid, _ in near["a"])
    assert near["c"][0][1] == pytest.approx(0.0)
