"""Signals of the placement suggester beyond the k-NN vote, and the views its evaluation needs.

The k-NN vote (:mod:`kbtool.placement`) only knows leaves that similar placed papers hold, so a
new topic with few placed examples (on-policy self-distillation in 2026) is out of its reach.
These signals read the taxonomy's own words and the placed papers as a whole. With ``e(q)``
the unit embedding of the query, ``c_L`` the normalised sum of the embeddings of the papers
placed on leaf ``L`` (weighted by their leaf weights), ``t_L`` the embedding of the leaf's
text (its name, its ancestors' names and its description) and ``bm25(q, L)`` the BM25 score of
the query against that text::

    centroid(L) = softmax_L( e(q) . c_L / tau )      (tau = 0.05; 0 for a leaf nobody holds)
    text(L)     = softmax_L( e(q) . t_L / tau )
    words(L)    = bm25(q, L) / sum_L' bm25(q, L')     (all 0 if q shares no word with a leaf)
    section(L)  = mean over the paper's list headings h of words_h(L)   (when given)

Each is a distribution over leaves (or zero), like the vote, so the mixture made in
``kbtool.placement.mixture`` keeps every score in [0, 1]. ``centroid`` and ``text`` need the
semantic extra; ``words`` and ``section`` are pure Python.

Dates and subtrees serve the temporal evaluation: a paper's month comes from its arXiv id, else
from its year and month; a leaf's *subtree* is the child of its pillar that contains it (the
leaf itself when it hangs directly under a pillar).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from kbtool.retrieval.lexical import BM25
from kbtool.retrieval.semantic import cache_dir, cached_embeddings, corpus_embeddings, get_encoder

if TYPE_CHECKING:
    import torch

    from kbtool.core.knowledge_base import KnowledgeBase
    from kbtool.core.model import Paper
    from kbtool.retrieval.semantic import Encoder

TEMPERATURE = 0.05
# Weights of the mixture, chosen on the leave-one-out evaluation of the survey's papers and a
# temporal split of the post-survey papers (benchmarks/placement_eval.py).
WEIGHT_CENTROID = 0.15
WEIGHT_TEXT = 0.25
WEIGHT_WORDS = 0.2
WEIGHT_SECTIONS = 0.3
HEADING_SEPARATOR = " > "


# --- dates and subtrees --------------------------------------------------------------------
def paper_month(paper: Paper) -> str | None:
    """``YYYY-MM`` of the paper's first version: from the arXiv id (YYMM.NNNNN) when it has
    one, else from ``year`` and ``month``; None when the month is unknown."""
    if paper.arxiv_id:
        return f"20{paper.arxiv_id[:2]}-{paper.arxiv_id[2:4]}"
    if paper.month:
        return f"{paper.year:04d}-{paper.month:02d}"
    return None


def papers_between(kb: KnowledgeBase, start: str, end: str) -> list[str]:
    """Ids of the papers whose month is in ``[start, end]`` (``YYYY-MM``, both inclusive)."""
    out = []
    for pid, paper in kb.papers.items():
        month = paper_month(paper)
        if month is not None and start <= month <= end:
            out.append(pid)
    return out


def papers_from(kb: KnowledgeBase, start: str) -> list[str]:
    """Ids of the papers dated ``start`` or later; a paper known only by its year counts as
    from December of that year (so a split by date never trains on a paper that may be later)."""
    out = []
    for pid, paper in kb.papers.items():
        month = paper_month(paper) or f"{paper.year:04d}-12"  # the latest it can be from
        if month >= start:
            out.append(pid)
    return out


def subtree_of(kb: KnowledgeBase) -> dict[str, str]:
    """Every node mapped to its subtree: the child of its pillar on its path (a pillar is its
    own subtree)."""
    out = {}
    for node_id in kb.nodes:
        path = kb.ancestors(node_id)
        out[node_id] = path[1].id if len(path) > 1 else path[0].id
    return out


def subtree_ranking(
    ranking: Sequence[tuple[str, float]], subtree: Mapping[str, str]
) -> list[tuple[str, float]]:
    """Subtrees scored by the sum of their leaves' scores, best first (ties: the subtree whose
    best leaf comes first in ``ranking``)."""
    score: dict[str, float] = {}
    first: dict[str, int] = {}
    for rank, (leaf, value) in enumerate(ranking):
        group = subtree[leaf]
        score[group] = score.get(group, 0.0) + value
        first.setdefault(group, rank)
    return sorted(score.items(), key=lambda gs: (-gs[1], first[gs[0]]))


# --- the signals ---------------------------------------------------------------------------
def leaf_text(kb: KnowledgeBase, leaf: str) -> str:
    """What a leaf means in words: its name, the names above it and its description."""
    path = kb.ancestors(leaf)
    above = ", ".join(node.name for node in path[:-1])
    node = path[-1]
    return " ".join(f"{node.name} ({above}): {node.description}".split())


def headings(sections: Sequence[str]) -> list[str]:
    """The last heading of each list section path (``"A > B > C"`` -> ``"C"``), de-duplicated."""
    out = [s.split(HEADING_SEPARATOR)[-1].strip() for s in sections]
    return list(dict.fromkeys(h for h in out if h))


def _softmax_rows(sims: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.softmax(sims / TEMPERATURE, dim=-1)


def leaf_text_embeddings(kb: KnowledgeBase, order: Sequence[str], encoder: Encoder) -> torch.Tensor:
    """Unit embeddings of the leaf texts (rows in ``order``), cached like the corpus."""
    emb, _ = cached_embeddings([leaf_text(kb, leaf) for leaf in order], encoder, cache_dir(kb.root))
    return emb


def text_scores(queries: torch.Tensor, leaf_emb: torch.Tensor) -> torch.Tensor:
    """``text(L)`` for each query row: a softmax over leaves of its cosine with the leaf texts."""
    return _softmax_rows(queries @ leaf_emb.T)


def centroid_scores(
    queries: torch.Tensor, paper_emb: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``centroid(L)`` for each query row, from the placed papers' embeddings ``paper_emb``
    (P, d) and their leaf weights ``weights`` (P, L). All zero when nothing is placed."""
    import torch

    counts = weights.sum(dim=0)
    if not bool((counts > 1e-9).any()):
        return torch.zeros(queries.shape[0], weights.shape[1])
    centroids = torch.nn.functional.normalize(weights.T @ paper_emb, dim=1)
    cos = queries @ centroids.T
    cos = cos.masked_fill((counts <= 1e-9).unsqueeze(0), float("-inf"))
    return _softmax_rows(cos)


def word_scores(
    kb: KnowledgeBase, texts: Sequence[str], order: Sequence[str]
) -> list[dict[str, float]]:
    """``words(L)`` for each text: its BM25 scores against the leaf texts, normalised to sum
    to 1 ({} for a text sharing no word with any leaf)."""
    index = BM25([leaf_text(kb, leaf) for leaf in order])
    out = []
    for text in texts:
        scores = index.scores(text)
        total = sum(scores)
        out.append(
            {leaf: s / total for leaf, s in zip(order, scores, strict=True) if s > 0.0}
            if total > 0.0
            else {}
        )
    return out


def section_scores(
    kb: KnowledgeBase, sections: Sequence[str], order: Sequence[str]
) -> dict[str, float]:
    """``section(L)`` for one paper's list sections: the mean over its headings of
    ``words(L)`` ({} when there are no headings; a heading matching no leaf adds nothing)."""
    found = headings(sections)
    out: dict[str, float] = {}
    for scores in word_scores(kb, found, order):
        for leaf, s in scores.items():
            out[leaf] = out.get(leaf, 0.0) + s / len(found)
    return out


def target_matrix(
    targets: Mapping[str, Mapping[str, float]], papers: Sequence[str], order: Sequence[str]
) -> torch.Tensor:
    """The (papers, leaves) matrix of leaf weights."""
    import torch

    column = {leaf: i for i, leaf in enumerate(order)}
    out = torch.zeros(len(papers), len(order))
    for r, pid in enumerate(papers):
        for leaf, w in targets[pid].items():
            out[r, column[leaf]] = w
    return out


def _paper_rows(kb: KnowledgeBase, enc: Encoder) -> tuple[dict[str, int], torch.Tensor]:
    docs, emb = corpus_embeddings(kb, enc)
    return {d.id: i for i, d in enumerate(docs) if d.kind == "paper"}, emb


def _mixed(
    queries: torch.Tensor,
    placed: Sequence[str],
    row: Mapping[str, int],
    emb: torch.Tensor,
    targets: Mapping[str, Mapping[str, float]],
    order: Sequence[str],
    leaf_emb: torch.Tensor,
) -> list[dict[str, float]]:
    import torch

    paper_emb = emb[torch.tensor([row[pid] for pid in placed], dtype=torch.long)]
    centroid = centroid_scores(queries, paper_emb, target_matrix(targets, placed, order))
    mixed = WEIGHT_CENTROID * centroid + WEIGHT_TEXT * text_scores(queries, leaf_emb)
    return [dict(zip(order, r, strict=True)) for r in mixed.tolist()]


def model_scores(
    kb: KnowledgeBase,
    texts: Sequence[str],
    order: Sequence[str],
    targets: Mapping[str, Mapping[str, float]],
    exclude: Collection[str],
    encoder: Encoder | None,
) -> list[dict[str, float]]:
    """For each query text, ``WEIGHT_CENTROID * centroid(L) + WEIGHT_TEXT * text(L)``, the
    centroids made of the placed papers not in ``exclude``."""
    enc = encoder if encoder is not None else get_encoder()
    row, emb = _paper_rows(kb, enc)
    placed = [pid for pid in targets if pid not in exclude]
    leaf_emb = leaf_text_embeddings(kb, order, enc)
    return _mixed(enc.encode(list(texts)), placed, row, emb, targets, order, leaf_emb)


def leave_one_out_scores(
    kb: KnowledgeBase,
    order: Sequence[str],
    targets: Mapping[str, Mapping[str, float]],
    encoder: Encoder | None,
) -> dict[str, dict[str, float]]:
    """``model_scores`` of every placed paper's title with that paper left out of the
    centroids (the same numbers as suggesting it with ``exclude={paper}``)."""
    enc = encoder if encoder is not None else get_encoder()
    row, emb = _paper_rows(kb, enc)
    leaf_emb = leaf_text_embeddings(kb, order, enc)
    placed = list(targets)
    out = {}
    for pid in placed:
        others = [o for o in placed if o != pid]
        query = emb[row[pid]].unsqueeze(0)
        out[pid] = _mixed(query, others, row, emb, targets, order, leaf_emb)[0]
    return out
