"""Evaluation of the placement suggester: leave-one-out over every placed paper.

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

Usage::

    python benchmarks/placement_eval.py [--neighbours 10] [--out FILE.json]

Needs scikit-learn for the TF-IDF baselines and the semantic extra for the embedding methods
(both are skipped with a note when missing). Prints markdown tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "benchmarks" / "placement_eval.json"
KS = (1, 3)
Ranking = Sequence[str]


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


# --- the run -------------------------------------------------------------------------------
def run(neighbours: int) -> dict[str, Any]:
    """Rank every placed paper with every available method; return scores and timings."""
    import kbtool
    from kbtool.retrieval.leave_one_out import leave_one_out
    from kbtool.retrieval.placement import leaf_prior, leaf_targets, leaves, rank_leaves
    from kbtool.retrieval.semantic import embedding_available

    kb = kbtool.load()
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
    args = parser.parse_args(argv)
    report = run(args.neighbours)
    print(markdown(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
