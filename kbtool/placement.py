"""Suggest taxonomy leaves for a paper: a k-nearest-neighbour vote over the placed papers.

The survey's authors placed hundreds of papers; a new paper probably belongs where its nearest
placed neighbours are. With ``s_i`` the similarity of the query to its i-th nearest placed
paper (cosine of MiniLM embeddings, or BM25 when the ``semantic`` extra is absent), clipped at
0, and ``w_i(L)`` that paper's weight on leaf ``L``::

    score(L) = sum_i s_i * w_i(L) / sum_i s_i          (over the n nearest, n = 10 by default)

so a score is the share of the neighbours' similarity that votes for ``L`` (in [0, 1]; a paper
placed under several leaves votes for each: multi-label). Ties, including the all-zero case of a
query sharing nothing with the corpus, are broken by how many placed papers each leaf holds.

``w_i(L)`` is 1 for every leaf the paper is placed in. A paper placed on an inner node (none is
today, but the schema allows it) is spread evenly over the leaves below that node: weight
1/m for each of its m leaves, so the vote says "somewhere under here" without favouring one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kbtool.paper_io import normalize_title, similar_titles

if TYPE_CHECKING:
    from kbtool.awesome import AwesomeRow
    from kbtool.kb import KnowledgeBase
    from kbtool.semantic import Backend, Encoder

DEFAULT_NEIGHBOURS = 10
EVIDENCE_PER_LEAF = 3

Targets = Mapping[str, Mapping[str, float]]
Neighbours = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class Evidence:
    """A placed paper that voted for a leaf, and how similar it is to the query."""

    paper_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class LeafSuggestion:
    """A suggested leaf, its score in [0, 1] and the nearest placed papers that support it."""

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


def rank_leaves(
    neighbours: Neighbours,
    targets: Targets,
    order: Sequence[str],
    prior: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Every leaf of ``order`` with its vote score, best first.

    ``neighbours`` are (paper id, similarity) pairs; negative similarities count as 0. Ties are
    broken by ``prior`` (larger first), then by position in ``order``.
    """
    total = sum(max(s, 0.0) for _, s in neighbours)
    raw: dict[str, float] = {}
    for pid, s in neighbours:
        for leaf, w in targets.get(pid, {}).items():
            raw[leaf] = raw.get(leaf, 0.0) + max(s, 0.0) * w
    prior = prior or {}
    position = {leaf: i for i, leaf in enumerate(order)}
    scored = [(leaf, raw.get(leaf, 0.0) / total if total > 0 else 0.0) for leaf in order]
    scored.sort(key=lambda ls: (-ls[1], -prior.get(ls[0], 0.0), position[ls[0]]))
    return scored


# --- neighbours ----------------------------------------------------------------------------
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
    backend: Backend = "auto",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
) -> list[list[tuple[str, float]]]:
    """For each query, the ``n`` most similar placed papers (not in ``exclude``), best first."""
    from kbtool.semantic import resolve_backend

    placed = [pid for pid in leaf_targets(kb) if pid not in exclude]
    if not placed or not queries:
        return [[] for _ in queries]
    if backend == "lexical" or (encoder is None and resolve_backend(backend) == "lexical"):
        from kbtool.lexical import BM25

        index = BM25([kb.papers[pid].title for pid in placed])
        return [[(placed[i], s) for i, s in index.top(q, n)] for q in queries]
    import torch

    from kbtool.semantic import corpus_embeddings, get_encoder

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
    neighbours: Neighbours,
    targets: Targets,
    order: Sequence[str],
    prior: Mapping[str, float],
    k: int,
) -> list[LeafSuggestion]:
    out = []
    for leaf, score in rank_leaves(neighbours, targets, order, prior)[:k]:
        evidence = tuple(
            Evidence(pid, kb.papers[pid].title, s)
            for pid, s in neighbours
            if targets.get(pid, {}).get(leaf, 0.0) > 0.0 and s > 0.0
        )[:EVIDENCE_PER_LEAF]
        node = kb.nodes[leaf]
        out.append(LeafSuggestion(leaf, node.name, kb.pillar_of(leaf), score, evidence))
    return out


def suggest_many(
    kb: KnowledgeBase,
    queries: Sequence[tuple[str, str | None]],
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    backend: Backend = "auto",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
) -> list[list[LeafSuggestion]]:
    """``suggest`` for many (title, abstract) pairs, embedding them in one batch."""
    if k < 1 or neighbours < 1:
        raise ValueError("k and neighbours must be at least 1")
    texts = [query_text(title, abstract) for title, abstract in queries]
    near = nearest_placed(kb, texts, neighbours, backend=backend, exclude=exclude, encoder=encoder)
    targets = leaf_targets(kb)
    order = leaves(kb)
    prior = leaf_prior(targets, exclude)
    return [_suggestions(kb, nb, targets, order, prior, k) for nb in near]


def suggest(
    kb: KnowledgeBase,
    title: str,
    abstract: str | None = None,
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    backend: Backend = "auto",
    exclude: Collection[str] = (),
    encoder: Encoder | None = None,
) -> list[LeafSuggestion]:
    """The ``k`` most likely taxonomy leaves for a paper, with scores and evidence papers.

    ``exclude`` removes placed papers from the neighbour pool (e.g. the paper itself, to see
    what the suggester would have said about it). ``backend`` as in ``kbtool.semantic.search``.
    """
    return suggest_many(
        kb,
        [(title, abstract)],
        k,
        neighbours=neighbours,
        backend=backend,
        exclude=exclude,
        encoder=encoder,
    )[0]


# --- leave-one-out over the placed papers (used by benchmarks/placement_eval.py) ------------
def leave_one_out(
    kb: KnowledgeBase,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    backend: Backend = "auto",
    encoder: Encoder | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """For every placed paper, the full leaf ranking computed without that paper.

    Embeddings: every title is embedded once and the paper's own row is masked. BM25: the
    index is rebuilt without the paper, so its document frequencies do not leak either.
    """
    from kbtool.semantic import resolve_backend

    targets = leaf_targets(kb)
    order = leaves(kb)
    placed = list(targets)
    out: dict[str, list[tuple[str, float]]] = {}
    lexical = backend == "lexical" or (encoder is None and resolve_backend(backend) == "lexical")
    if lexical:
        for pid in placed:
            near = nearest_placed(
                kb, [kb.papers[pid].title], neighbours, backend="lexical", exclude={pid}
            )[0]
            out[pid] = rank_leaves(near, targets, order, leaf_prior(targets, {pid}))
        return out
    import torch

    from kbtool.semantic import corpus_embeddings, get_encoder

    enc = encoder if encoder is not None else get_encoder()
    docs, emb = corpus_embeddings(kb, enc)
    row = {d.id: i for i, d in enumerate(docs) if d.kind == "paper"}
    e = emb[torch.tensor([row[pid] for pid in placed])]
    sims = e @ e.T
    sims.fill_diagonal_(float("-inf"))
    top = torch.topk(sims, min(neighbours, len(placed) - 1), dim=1)
    for i, pid in enumerate(placed):
        near = [
            (placed[j], s)
            for s, j in zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)
        ]
        out[pid] = rank_leaves(near, targets, order, leaf_prior(targets, {pid}))
    return out


# --- triage of a newer paper list ----------------------------------------------------------
@dataclass(frozen=True)
class TriageItem:
    """A paper of a newer list that the knowledge base lacks, with suggested leaves."""

    title: str
    url: str | None
    listed_under: tuple[str, ...]
    suggestions: tuple[LeafSuggestion, ...]


def missing_rows(kb: KnowledgeBase, rows: Sequence[AwesomeRow]) -> list[list[AwesomeRow]]:
    """Rows whose paper is not in ``kb`` (same arXiv id or a variant title), grouped per paper."""
    arxiv = {p.arxiv_id for p in kb.papers.values() if p.arxiv_id}
    titles = {normalize_title(p.title): p.title for p in kb.papers.values()}
    groups: dict[str, list[AwesomeRow]] = {}
    for row in rows:
        if row.arxiv_id and row.arxiv_id in arxiv:
            continue
        key = normalize_title(row.title)
        if key in titles or any(similar_titles(row.title, t) for t in titles.values()):
            continue
        group = row.arxiv_id or key
        groups.setdefault(group, []).append(row)
    return list(groups.values())


def triage_awesome(
    kb: KnowledgeBase,
    text: str,
    k: int = 3,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    backend: Backend = "auto",
    encoder: Encoder | None = None,
) -> list[TriageItem]:
    """Suggest leaves for every paper of a (newer) upstream-style list that ``kb`` lacks.

    Only rows under headings that are taxonomy nodes are read (see ``kbtool.awesome``); the
    heading a row sits under is reported as ``listed_under`` next to the suggestions.
    """
    from kbtool.awesome import parse_awesome

    parsed = parse_awesome(text, set(kb.nodes))
    groups = missing_rows(kb, parsed.rows)
    found = suggest_many(
        kb,
        [(g[0].title, None) for g in groups],
        k,
        neighbours=neighbours,
        backend=backend,
        encoder=encoder,
    )
    return [
        TriageItem(
            g[0].title,
            g[0].url,
            tuple(dict.fromkeys(r.node for r in g)),
            tuple(s),
        )
        for g, s in zip(groups, found, strict=True)
    ]
