"""Evaluation of the placement suggester: leave-one-out over every placed paper, and a temporal
split (suggest for the newest papers with only older placements).

Each placed paper is held out in turn and ranked against the taxonomy leaves using only the
other placed papers (embeddings: the paper's own row is masked; BM25 and TF-IDF: the index is
rebuilt without it). Metrics, with T the paper's true leaves and R its ranking:

* ``hit@k``    = 1 if R[:k] contains a leaf of T, else 0   (the "top-k recall" of the issue);
* ``recall@k`` = |R[:k] ∩ T| / |T|                         (share of its leaves recovered);

averaged over papers. *Overall*: all leaves are ranked. *Per pillar* P: the papers with a leaf
in P, every ranking restricted to P's leaves and T to T ∩ P (the pillar is given to every
method alike), which is where the "majority leaf per pillar" baseline makes sense.

Methods: ``hybrid`` (MiniLM + BM25 k-NN vote, the default with the semantic extra),
``embedding`` (MiniLM k-NN vote), ``lexical`` (BM25 k-NN vote, the default without the extra),
and two baselines: ``majority`` (leaves by how many other placed papers they hold) and
``tfidf-1nn`` (scikit-learn TF-IDF of titles, cosine nearest neighbour: the leaves of the
nearest paper first, then those of the next, ...). ``tfidf-knn`` feeds the same TF-IDF
neighbours to our vote, to separate the representation from the voting rule.

*Temporal split* (issue 14): the placed papers dated ``--test-from`` to ``--test-to`` (by arXiv
id, else year and month; default 2026-01 to 2026-05) are suggested for with every paper dated
``--test-from`` or later excluded from the neighbours, centroids and prior, i.e. using only
the older placements (the survey's and the post-survey papers before 2026-01). Reported by
title alone, and by title plus the curated-list sections that file the paper (read from the
source file ``--sections``, the post-survey papers JSONL, by arXiv id). Leaf level: a hit is
a suggested leaf the paper is placed on (a placement on an inner node counts every leaf under
it). Subtree level: leaf scores summed per *subtree*, the child of a pillar that contains the
leaf (``knowledge-elicitation``, ``distillation-algorithms``, ``alignment``, ``agent``,
``multi-modality``, ``law``, ...); a hit is a suggested subtree holding a placed leaf. The
leave-one-out rows report both levels too, over all placed papers and, once papers of the
post-survey source are placed, over the others alone (the survey's, comparable over time).
``vote only`` rows switch every signal but the k-NN vote off: the suggester before issue 14.

Usage::

    python benchmarks/placement_eval.py [--root KB] [--neighbours 10] [--out FILE.json]
        [--sections ../shared/sources/post-survey-papers.jsonl] [--test-from 2026-01]

Needs scikit-learn for the TF-IDF baselines and the semantic extra for the embedding methods
(both are skipped with a note when missing). Prints markdown tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "benchmarks" / "placement_eval.json"
SOURCE_NAME = "post-survey-papers.jsonl"
KS = (1, 3)
Ranking = Sequence[str]
Scored = Sequence[tuple[str, float]]


# --- metrics -------------------------------------------------------------------------------
def hit_at_k(ranking: Ranking, truth: Collection[str], k: int) -> float:
    """1.0 if one of the first ``k`` ranked leaves is true, else 0.0."""
    return 1.0 if any(leaf in truth for leaf in ranking[:k]) else 0.0


def recall_at_k(ranking: Ranking, truth: Collection[str], k: int) -> float:
    """Share of the true leaves found among the first ``k`` ranked leaves."""
    return len(set(ranking[:k]) & set(truth)) / len(truth) if truth else 0.0


def _scores(rows: list[tuple[Ranking, Collection[str]]]) -> dict[str, float]:
    n = len(rows)
    out: dict[str, float] = {"n": n}
    for k in KS:
        out[f"hit@{k}"] = sum(hit_at_k(r, t, k) for r, t in rows) / n if n else 0.0
    out[f"recall@{KS[-1]}"] = sum(recall_at_k(r, t, KS[-1]) for r, t in rows) / n if n else 0.0
    return out


def evaluate(
    rankings: Mapping[str, Ranking],
    truths: Mapping[str, Collection[str]],
    pillar_of: Mapping[str, str],
) -> dict[str, dict[str, float]]:
    """Overall scores over all leaves, and per pillar with rankings and truths restricted to
    that pillar's leaves (``pillar_of`` maps every leaf to its pillar)."""
    report = {"overall": _scores([(rankings[p], truths[p]) for p in rankings])}
    for pillar in dict.fromkeys(pillar_of.values()):
        rows = []
        for pid, ranking in rankings.items():
            truth = {leaf for leaf in truths[pid] if pillar_of[leaf] == pillar}
            if truth:
                rows.append(([leaf for leaf in ranking if pillar_of[leaf] == pillar], truth))
        report[pillar] = _scores(rows)
    return report


# --- baselines -----------------------------------------------------------------------------
def majority_rankings(
    targets: Mapping[str, Mapping[str, float]], order: Sequence[str]
) -> dict[str, list[str]]:
    """Leaves by how much weight the other placed papers put on them (ties: taxonomy order)."""
    from kbtool.retrieval.placement import leaf_prior

    out = {}
    for pid in targets:
        prior = leaf_prior(targets, {pid})
        out[pid] = sorted(order, key=lambda leaf: (-prior.get(leaf, 0.0), order.index(leaf)))
    return out


def first_neighbour_ranking(
    neighbours: Sequence[tuple[str, float]],
    targets: Mapping[str, Mapping[str, float]],
    order: Sequence[str],
    prior: Mapping[str, float],
) -> list[str]:
    """Nearest-neighbour ranking: leaves of the nearest paper (similarity > 0) first, then
    the new leaves of the next one, ...; leaves within a paper and the rest by ``prior``."""
    first: dict[str, int] = {}
    for rank, (pid, sim) in enumerate(neighbours):
        if sim <= 0.0:
            break
        for leaf in targets[pid]:
            first.setdefault(leaf, rank)
    never = len(neighbours) + 1
    return sorted(
        order, key=lambda leaf: (first.get(leaf, never), -prior.get(leaf, 0.0), order.index(leaf))
    )


def tfidf_neighbours(
    titles: Mapping[str, str], n: int | None = None
) -> dict[str, list[tuple[str, float]]]:
    """Leave-one-out cosine neighbours of every title under scikit-learn's TF-IDF (English stop
    words removed), the vectoriser refitted without the held-out title."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    ids = list(titles)
    out = {}
    for pid in ids:
        others = [o for o in ids if o != pid]
        vectorizer = TfidfVectorizer(stop_words="english")
        matrix = vectorizer.fit_transform([titles[o] for o in others])
        index = NearestNeighbors(metric="cosine", algorithm="brute").fit(matrix)
        count = len(others) if n is None else min(n, len(others))
        dist, idx = index.kneighbors(vectorizer.transform([titles[pid]]), n_neighbors=count)
        out[pid] = [(others[j], 1.0 - d) for d, j in zip(dist[0], idx[0], strict=True)]
    return out


# --- two levels and the temporal split ------------------------------------------------------
def two_levels(
    rankings: Mapping[str, Scored],
    truths: Mapping[str, Collection[str]],
    subtree: Mapping[str, str],
) -> dict[str, dict[str, float]]:
    """Scores at the leaf level and at the subtree level (leaf scores summed per subtree)."""
    from kbtool.retrieval.placement_features import subtree_ranking

    leaf_rows = [([leaf for leaf, _ in r], truths[pid]) for pid, r in rankings.items()]
    subtree_rows = [
        ([g for g, _ in subtree_ranking(r, subtree)], {subtree[leaf] for leaf in truths[pid]})
        for pid, r in rankings.items()
    ]
    return {"leaf": _scores(leaf_rows), "subtree": _scores(subtree_rows)}


def read_sections(path: Path) -> dict[str, list[str]]:
    """arXiv id -> list sections (``section`` of every ``list_sections`` entry) of the source."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            out[record["arxiv_id"]] = [s["section"] for s in record.get("list_sections", [])]
    return out


def default_sections() -> Path | None:
    """The shared source file next to the main checkout or a worktree, if there is one."""
    for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        path = base / "shared" / "sources" / SOURCE_NAME
        if path.is_file():
            return path
    return None


def temporal_rankings(
    kb: KnowledgeBase,
    start: str,
    end: str,
    *,
    method: str,
    neighbours: int,
    sections: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Full leaf rankings of the placed papers dated ``start``..``end``, suggested with every
    paper dated ``start`` or later excluded (only older placements are used)."""
    from kbtool.retrieval.placement import leaf_targets, leaves, suggest_many
    from kbtool.retrieval.placement_features import papers_between, papers_from

    targets = leaf_targets(kb)
    test = [pid for pid in papers_between(kb, start, end) if pid in targets]
    if not test:
        return {}
    per_query = None
    if sections is not None:
        per_query = [list(sections.get(kb.papers[pid].arxiv_id or "", [])) for pid in test]
    found = suggest_many(
        kb,
        [(kb.papers[pid].title, None) for pid in test],
        k=len(leaves(kb)),
        neighbours=neighbours,
        method=method,  # type: ignore[arg-type]
        exclude=set(papers_from(kb, start)),
        sections=per_query,
    )
    return {pid: [(s.node, s.score) for s in f] for pid, f in zip(test, found, strict=True)}


@contextmanager
def vote_only() -> Iterator[None]:
    """The suggester as before issue 14: every weight but the k-NN vote's set to 0."""
    import kbtool.retrieval.placement_features as features

    names = ("WEIGHT_CENTROID", "WEIGHT_TEXT", "WEIGHT_WORDS", "WEIGHT_SECTIONS")
    saved = {name: getattr(features, name) for name in names}
    for name in names:
        setattr(features, name, 0.0)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(features, name, value)


def level_rows(
    kb: KnowledgeBase,
    methods: Sequence[str],
    neighbours: int,
    split: tuple[str, str],
    sections: Mapping[str, Sequence[str]] | None,
) -> list[dict[str, Any]]:
    """Leave-one-out and temporal-split scores at both levels, one row per (evaluation,
    method, input)."""
    from kbtool.retrieval.leave_one_out import leave_one_out
    from kbtool.retrieval.placement import leaf_targets
    from kbtool.retrieval.placement_features import subtree_of

    subtree = subtree_of(kb)
    targets = leaf_targets(kb)
    newer = set(sections or {})  # arXiv ids of the post-survey source
    survey_papers = {pid for pid in targets if kb.papers[pid].arxiv_id not in newer}
    truths = {pid: {leaf for leaf, w in t.items() if w > 0} for pid, t in targets.items()}
    variants = [(m, False) for m in methods] + ([(methods[0], True)] if methods else [])
    rows = []
    for method, old in variants:
        name = f"{method} (vote only)" if old else method
        with vote_only() if old else _nothing():
            loo = leave_one_out(kb, neighbours=neighbours, method=method)  # type: ignore[arg-type]
            rows.append(
                {"evaluation": "leave-one-out", "method": name, "input": "title"}
                | two_levels(loo, truths, subtree)
            )
            old_loo = {pid: r for pid, r in loo.items() if pid in survey_papers}
            if 0 < len(old_loo) < len(loo):  # the survey's papers alone, comparable over time
                rows.append(
                    {"evaluation": "leave-one-out, survey's papers", "method": name}
                    | {"input": "title"}
                    | two_levels(old_loo, truths, subtree)
                )
            inputs: list[tuple[str, Mapping[str, Sequence[str]] | None]] = [("title", None)]
            if sections is not None and not old:
                inputs.append(("title + list sections", sections))
            for label, given in inputs:
                ranked = temporal_rankings(
                    kb, *split, method=method, neighbours=neighbours, sections=given
                )
                if ranked:
                    rows.append(
                        {
                            "evaluation": f"temporal {split[0]}..{split[1]}",
                            "method": name,
                            "input": label,
                        }
                        | two_levels(ranked, truths, subtree)
                    )
    return rows


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def levels_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The placement table of the README: rank 1 and top 3 at both levels, n per row."""
    lines = [
        "| evaluation | method | input | n | leaf rank 1 | leaf top 3 | subtree rank 1 "
        "| subtree top 3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        leaf, sub = r["leaf"], r["subtree"]
        lines.append(
            f"| {r['evaluation']} | {r['method']} | {r['input']} | {int(leaf['n'])} "
            f"| {leaf['hit@1']:.0%} | {leaf['hit@3']:.0%} | {sub['hit@1']:.0%} "
            f"| {sub['hit@3']:.0%} |"
        )
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------
def run(neighbours: int, root: Path | None = None) -> dict[str, Any]:
    """Rank every placed paper with every available method; return scores and timings."""
    import kbtool
    from kbtool.retrieval.leave_one_out import leave_one_out
    from kbtool.retrieval.placement import leaf_prior, leaf_targets, leaves, rank_leaves
    from kbtool.retrieval.semantic import embedding_available

    kb = kbtool.load(root)
    targets = leaf_targets(kb)
    order = leaves(kb)
    pillar_of = {leaf: kb.pillar_of(leaf) for leaf in order}
    truths = {pid: {leaf for leaf, w in t.items() if w > 0} for pid, t in targets.items()}
    rankings: dict[str, dict[str, list[str]]] = {}
    seconds: dict[str, float] = {}
    notes: list[str] = []

    def timed(name: str, make: Any) -> None:  # noqa: ANN401
        start = time.perf_counter()
        rankings[name] = make()
        seconds[name] = time.perf_counter() - start

    methods = ["hybrid", "embedding", "lexical"] if embedding_available() else ["lexical"]
    if "hybrid" not in methods:
        notes.append("semantic extra not installed: embedding and hybrid skipped")
    for method in methods:
        timed(
            method,
            lambda m=method: {
                pid: [leaf for leaf, _ in ranking]
                for pid, ranking in leave_one_out(kb, neighbours=neighbours, method=m).items()
            },
        )
    timed("majority", lambda: majority_rankings(targets, order))
    try:
        import sklearn  # noqa: F401
    except ImportError:
        notes.append("scikit-learn not installed: TF-IDF baselines skipped")
    else:
        titles = {pid: kb.papers[pid].title for pid in targets}
        near = tfidf_neighbours(titles)
        priors = {pid: leaf_prior(targets, {pid}) for pid in targets}
        timed(
            "tfidf-1nn",
            lambda: {
                pid: first_neighbour_ranking(near[pid], targets, order, priors[pid])
                for pid in targets
            },
        )
        timed(
            "tfidf-knn",
            lambda: {
                pid: [
                    leaf
                    for leaf, _ in rank_leaves(near[pid][:neighbours], targets, order, priors[pid])
                ]
                for pid in targets
            },
        )
    scores = {name: evaluate(r, truths, pillar_of) for name, r in rankings.items()}
    return {
        "papers": len(targets),
        "leaves": len(order),
        "neighbours": neighbours,
        "pillars": list(dict.fromkeys(pillar_of.values())),
        "scores": scores,
        "seconds": seconds,
        "notes": notes,
    }


def markdown(report: dict[str, Any]) -> str:
    """Two tables: overall scores, then hit@1 / hit@3 per pillar (restricted to the pillar)."""
    scores = report["scores"]
    lines = [
        f"Leave-one-out over {report['papers']} placed papers, {report['leaves']} leaves, "
        f"{report['neighbours']} neighbours.",
        "",
        "| method | hit@1 | hit@3 | recall@3 |",
        "|---|---|---|---|",
    ]
    for name, s in scores.items():
        o = s["overall"]
        lines.append(f"| {name} | {o['hit@1']:.3f} | {o['hit@3']:.3f} | {o['recall@3']:.3f} |")
    pillars = report["pillars"]
    any_scores = next(iter(scores.values()))
    head = " | ".join(f"{p} (n={int(any_scores[p]['n'])})" for p in pillars)
    lines += ["", f"| method (hit@1 / hit@3) | {head} |", "|---" * (len(pillars) + 1) + "|"]
    for name, s in scores.items():
        cells = " | ".join(f"{s[p]['hit@1']:.3f} / {s[p]['hit@3']:.3f}" for p in pillars)
        lines.append(f"| {name} | {cells} |")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the evaluation, print the tables and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--neighbours", type=int, default=10, help="k of the k-NN vote")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--root", type=Path, default=None, help="knowledge base (default: ours)")
    parser.add_argument(
        "--sections", type=Path, default=default_sections(), help=f"the {SOURCE_NAME} source"
    )
    parser.add_argument("--test-from", default="2026-01", help="first month of the test split")
    parser.add_argument("--test-to", default="2026-05", help="last month of the test split")
    parser.add_argument("--levels-only", action="store_true", help="skip the baseline tables")
    args = parser.parse_args(argv)
    import kbtool
    from kbtool.retrieval.semantic import embedding_available

    report: dict[str, Any] = {}
    if not args.levels_only:
        report = run(args.neighbours, args.root)
        print(markdown(report) + "\n")
    methods = ["hybrid", "lexical"] if embedding_available() else ["lexical"]
    sections = read_sections(args.sections) if args.sections is not None else None
    rows = level_rows(
        kbtool.load(args.root), methods, args.neighbours, (args.test_from, args.test_to), sections
    )
    report["levels"] = rows
    print(levels_markdown(rows))
    if not any(r["evaluation"].startswith("temporal") for r in rows):
        print(f"- no placed paper dated {args.test_from}..{args.test_to}: temporal split skipped")
    elif sections is None:
        print("- no list sections file: the temporal split is reported by title only")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
