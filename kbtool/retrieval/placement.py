"""Suggest taxonomy leaves for a paper: a k-nearest-neighbour vote over the placed papers.

The survey's authors placed hundreds of papers; a new paper probably belongs where its nearest
placed neighbours are. For one similarity (cosine of MiniLM embeddings, or BM25 of titles), with
``s_i`` the similarity of the query to its i-th nearest placed paper (clipped at 0) and
``w_i(L)`` that paper's weight on leaf ``L``::

    vote(L) = sum_i s_i * w_i(L) / sum_i s_i            (over the n nearest, n = 10 by default)

so a vote is the share of the neighbours' similarity that goes to ``L``, in [0, 1]; a paper
placed under several leaves votes for each (multi-label). Each neighbour's term is its *share*
of the score and is reported as evidence. The ``hybrid`` method, the default when the semantic
extra is installed (it scored best in ``benchmarks/placement_eval.py``), averages the
embedding vote and the BM25 vote with equal weights; without the extra, ``auto`` is BM25
alone. Ties, including the all-zero case of a query sharing no word with any placed title, are
broken by how much placed weight each leaf holds, then by taxonomy order.

The vote is then mixed with signals that need no near neighbour: a BM25 match of the title
against the leaves' own texts; with embeddings, also a leaf-centroid classifier and the
embedding similarity to the leaf texts; when the curated-list headings filing the paper are
given, a BM25 match of those headings against the leaf texts. See ``mixture`` and
``kbtool.retrieval.placement_features`` for the formulas and weights. The vote keeps its evidence;
the other signals add score without evidence papers.

``w_i(L)`` is 1 for every leaf the paper is placed in. A paper placed on an inner node (none is
today, but the schema allows it) is spread evenly over the leaves below that node: weight 1/m
for each of its m leaves, so the vote says "somewhere under here" without favouring one leaf.

Triage of a newer paper list lives in :mod:`kbtool.retrieval.triage`, the leave-one-out
evaluation in :mod:`kbtool.retrieval.leave_one_out`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import kbtool.retrieval.placement_features as features
from kbtool.retrieval.lexical import BM25
from kbtool.retrieval.semantic import (
    SemanticUnavailableError,
    corpus_embeddings,
    embedding_available,
    get_encoder,
)

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase
    from kbtool.retrieval.semantic import Encoder

DEFAULT_NEIGHBOURS = 10
EVIDENCE_PER_LEAF = 3

Method = Literal["auto", "hybrid", "embedding", "lexical"]
Similarity = Literal["embedding", "lexical"]
Targets = Mapping[str, Mapping[str, float]]
Neighbours = Sequence[tuple[str, float]]
Votes = dict[str, dict[str, float]]  # leaf -> {paper id: share of the leaf's score}


@dataclass(frozen=True)
class Evidence:
    """A placed paper that voted for a leaf and its share of the leaf's score."""

    paper_id: str
    title: str
    share: float


@dataclass(frozen=True)
class LeafSuggestion:
    """A suggested leaf, its score in [0, 1] and the placed papers that contributed most."""

    node: str
    name: str
    pillar: str
    score: float
    evidence: tuple[Evidence, ...]


# --- the vote (pure, no model) -------------------------------------------------------------
def leaves(kb: KnowledgeBase) -> list[str]:
    """Taxonomy nodes without children, in taxonomy order."""
    return [n for n in kb.nodes if not kb.children(n)]


def leaf_targets(kb: KnowledgeBase) -> dict[str, dict[str, float]]:
    """Leaf weights of every placed paper: 1 per leaf, 1/m per leaf under an inner node."""
    leaf_set = set(leaves(kb))
    out: dict[str, dict[str, float]] = {}
    for paper in kb.papers.values():
        weights: dict[str, float] = {}
        for node in paper.nodes:
            below = [n for n in kb.descendants(node) if n in leaf_set]
            for leaf in below:
                weights[leaf] = max(weights.get(leaf, 0.0), 1.0 / len(below))
        if weights:
            out[paper.id] = weights
    return out


def leaf_prior(targets: Targets, exclude: Collection[str] = ()) -> dict[str, float]:
    """Total weight of the placed papers on each leaf (papers in ``exclude`` left out)."""
    prior: dict[str, float] = {}
    for pid, weights in targets.items():
        if pid in exclude:
            continue
        for leaf, w in weights.items():
            prior[leaf] = prior.get(leaf, 0.0) + w
    return prior


def votes(neighbours: Neighbours, targets: Targets) -> Votes:
    """Each neighbour's share of each leaf's vote: ``s_i w_i(L) / sum_j s_j`` (s clipped at 0)."""
    total = sum(max(s, 0.0) for _, s in neighbours)
    out: Votes = {}
    if total <= 0.0:
        return out
    for pid, s in neighbours:
        for leaf, w in targets.get(pid, {}).items():
            share = max(s, 0.0) * w / total
            if share > 0.0:
                shares = out.setdefault(leaf, {})
                shares[pid] = shares.get(pid, 0.0) + share
    return out


def average_votes(parts: Sequence[Votes]) -> Votes:
    """The equal-weight mean of several votes (a paper found by both keeps both shares)."""
    out: Votes = {}
    for part in parts:
        for leaf, shares in part.items():
            mine = out.setdefault(leaf, {})
            for pid, share in shares.items():
                mine[pid] = mine.get(pid, 0.0) + share / len(parts)
    return out


def scale_votes(vote: Votes, factor: float) -> Votes:
    """Every share multiplied by ``factor`` (the vote's weight in a mixture)."""
    return {leaf: {pid: s * factor for pid, s in shares.items()} for leaf, shares in vote.items()}


def rank_votes(
    vote: Votes,
    order: Sequence[str],
    prior: Mapping[str, float] | None = None,
    extra: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Every leaf of ``order`` with its score (sum of shares, plus ``extra`` scores that no
    paper stands behind), best first; ties broken by ``prior`` (larger first), then by
    position in ``order``."""
    prior = prior or {}
    extra = extra or {}
    position = {leaf: i for i, leaf in enumerate(order)}
    scored = [(leaf, sum(vote.get(leaf, {}).values()) + extra.get(leaf, 0.0)) for leaf in order]
    scored.sort(key=lambda ls: (-ls[1], -prior.get(ls[0], 0.0), position[ls[0]]))
    return scored


def rank_leaves(
    neighbours: Neighbours,
    targets: Targets,
    order: Sequence[str],
    prior: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Every leaf of ``order`` scored by the vote of ``neighbours`` ((paper id, similarity))."""
    return rank_votes(votes(neighbours, targets), order, prior)


# --- neighbours ----------------------------------------------------------------------------
def resolve_method(method: str) -> tuple[Similarity, ...]:
    """The similarities a method uses: ``auto`` is hybrid when the extra is installed, else
    lexical; ``hybrid`` and ``embedding`` raise ``SemanticUnavailableError`` without it."""
    if method == "lexical":
        return ("lexical",)
    if method not in ("auto", "hybrid", "embedding"):
        raise ValueError(f"unknown method {method!r}; use auto, hybrid, embedding or lexical")
    if not embedding_available():
        if method == "auto":
            return ("lexical",)
        raise SemanticUnavailableError()
    return ("embedding",) if method == "embedding" else ("embedding", "lexical")


def query_text(title: str, abstract: str | None = None) -> str:
    """What is compared with the placed papers' titles: the title, plus the abstract if given."""
    title = " ".join(title.split())
    if not title:
        raise ValueError("the title is empty")
    return f"{title}. {' '.join(abstract.split())}" if abstract and abstract.strip() else title


def nearest_placed(
    kb: KnowledgeBase,
    queries: Sequence[str],
    n: int = DEFAULT_NEIGHBOURS,
    *,
    similarity: Similarity = "embedding",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
) -> list[list[tuple[str, float]]]:
    """For each query, the ``n`` most similar placed papers (not in ``exclude``), best first."""
    placed = [pid for pid in leaf_targets(kb) if pid not in exclude]
    if not placed or not queries:
        return [[] for _ in queries]
    if similarity == "lexical":
        index = BM25([kb.papers[pid].title for pid in placed])
        return [[(placed[i], s) for i, s in index.top(q, n)] for q in queries]
    import torch  # deferred: heavy, and only the embedding similarity needs it

    enc = encoder if encoder is not None else get_encoder()
    docs, emb = corpus_embeddings(kb, enc)
    row = {d.id: i for i, d in enumerate(docs) if d.kind == "paper"}
    corpus = emb[torch.tensor([row[pid] for pid in placed])]
    sims = enc.encode(list(queries)) @ corpus.T
    top = torch.topk(sims, min(n, len(placed)), dim=1)
    return [
        [(placed[j], s) for s, j in zip(vals, idx, strict=True)]
        for vals, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def _suggestions(
    kb: KnowledgeBase,
    vote: Votes,
    order: Sequence[str],
    prior: Mapping[str, float],
    k: int,
    extra: Mapping[str, float] | None = None,
) -> list[LeafSuggestion]:
    out = []
    for leaf, score in rank_votes(vote, order, prior, extra)[:k]:
        shares = sorted(vote.get(leaf, {}).items(), key=lambda ps: (-ps[1], ps[0]))
        evidence = tuple(
            Evidence(pid, kb.papers[pid].title, share) for pid, share in shares[:EVIDENCE_PER_LEAF]
        )
        node = kb.nodes[leaf]
        out.append(LeafSuggestion(leaf, node.name, kb.pillar_of(leaf), score, evidence))
    return out


def mixture(
    knn: Votes,
    model: Mapping[str, float] | None,
    words: Mapping[str, float],
    section: Mapping[str, float],
) -> tuple[Votes, dict[str, float]]:
    """The final score as (scaled k-NN vote, extra leaf scores without evidence papers).

    Without embeddings (``model`` None): ``(1 - W_words) vote + W_words words``. With them,
    ``model`` (``W_centroid centroid + W_text text``, already weighted) is added and the vote
    gets what is left. When list headings are known, all that is scaled by 1 - W_sections and
    ``W_sections section`` is added (formulas in ``kbtool.retrieval.placement_features``)."""
    weight = 1.0 - features.WEIGHT_WORDS
    extra = {leaf: features.WEIGHT_WORDS * v for leaf, v in words.items()}
    if model is not None:
        weight -= features.WEIGHT_CENTROID + features.WEIGHT_TEXT
        for leaf, v in model.items():
            extra[leaf] = extra.get(leaf, 0.0) + v
    if section:
        weight *= 1.0 - features.WEIGHT_SECTIONS
        extra = {leaf: v * (1.0 - features.WEIGHT_SECTIONS) for leaf, v in extra.items()}
        for leaf, v in section.items():
            extra[leaf] = extra.get(leaf, 0.0) + features.WEIGHT_SECTIONS * v
    return scale_votes(knn, weight), extra


def suggest_many(
    kb: KnowledgeBase,
    queries: Sequence[tuple[str, str | None]],
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    method: Method = "auto",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
    sections: Sequence[Sequence[str]] | None = None,
) -> list[list[LeafSuggestion]]:
    """``suggest`` for many (title, abstract) pairs, embedding them in one batch;
    ``sections[i]`` are the list sections of query ``i`` (optional)."""
    if k < 1 or neighbours < 1:
        raise ValueError("k and neighbours must be at least 1")
    if sections is not None and len(sections) != len(queries):
        raise ValueError(f"{len(sections)} section lists for {len(queries)} queries")
    texts = [query_text(title, abstract) for title, abstract in queries]
    sims = resolve_method(method)
    targets = leaf_targets(kb)
    per_similarity = [
        nearest_placed(kb, texts, neighbours, similarity=s, exclude=exclude, encoder=encoder)
        for s in sims
    ]
    order = leaves(kb)
    prior = leaf_prior(targets, exclude)
    model: Sequence[Mapping[str, float] | None] = [None] * len(texts)
    if "embedding" in sims and texts:
        model = features.model_scores(kb, texts, order, targets, exclude, encoder)
    words = features.word_scores(kb, texts, order)
    out = []
    for i in range(len(texts)):
        knn = average_votes([votes(near[i], targets) for near in per_similarity])
        section = features.section_scores(kb, sections[i], order) if sections else {}
        vote, extra = mixture(knn, model[i], words[i], section)
        out.append(_suggestions(kb, vote, order, prior, k, extra))
    return out


def suggest(
    kb: KnowledgeBase,
    title: str,
    abstract: str | None = None,
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    method: Method = "auto",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
    sections: Sequence[str] = (),
) -> list[LeafSuggestion]:
    """The ``k`` most likely taxonomy leaves for a paper, with scores and evidence papers.

    ``method``: ``auto`` (hybrid with the semantic extra, else lexical), ``hybrid``,
    ``embedding`` or ``lexical``. ``exclude`` removes placed papers from the neighbours and
    the leaf centroids (e.g. the paper itself, to see what the suggester would have said
    without it). ``sections``: headings of curated lists that file the paper ("A > B"), when
    known; they add a match of each heading against the leaves' own texts.
    """
    return suggest_many(
        kb,
        [(title, abstract)],
        k,
        neighbours=neighbours,
        method=method,
        exclude=exclude,
        encoder=encoder,
        sections=[sections],
    )[0]
