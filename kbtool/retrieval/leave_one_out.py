"""Leave-one-out evaluation of placement: every placed paper ranked by the others' vote.

Used by ``benchmarks/placement_eval.py`` to compare the similarities of
:mod:`kbtool.retrieval.placement` without letting a paper vote for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import kbtool.retrieval.placement_features as features
from kbtool.retrieval.placement import (
    DEFAULT_NEIGHBOURS,
    Method,
    Similarity,
    average_votes,
    leaf_prior,
    leaf_targets,
    leaves,
    mixture,
    nearest_placed,
    rank_votes,
    resolve_method,
    votes,
)
from kbtool.retrieval.semantic import corpus_embeddings, get_encoder

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase
    from kbtool.retrieval.semantic import Encoder


def leave_one_out(
    kb: KnowledgeBase,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    method: Method = "auto",
    encoder: Encoder | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """For every placed paper, the full leaf ranking computed without that paper.

    Embeddings: every title is embedded once and the paper's own row is masked. BM25: the
    index is rebuilt without the paper, so its document frequencies do not leak either.
    """
    targets = leaf_targets(kb)
    order = leaves(kb)
    placed = list(targets)
    near: dict[Similarity, dict[str, list[tuple[str, float]]]] = {}
    for similarity in resolve_method(method):
        if similarity == "lexical":
            near["lexical"] = {
                pid: nearest_placed(
                    kb, [kb.papers[pid].title], neighbours, similarity="lexical", exclude={pid}
                )[0]
                for pid in placed
            }
        else:
            near["embedding"] = _loo_embedding(kb, placed, neighbours, encoder)
    model: Mapping[str, Mapping[str, float]] = {}
    if "embedding" in near:
        model = features.leave_one_out_scores(kb, order, targets, encoder)
    titles = [kb.papers[p].title for p in placed]
    words = dict(zip(placed, features.word_scores(kb, titles, order), strict=True))
    out = {}
    for pid in placed:
        knn = average_votes([votes(found[pid], targets) for found in near.values()])
        vote, extra = mixture(knn, model.get(pid), words[pid], {})
        out[pid] = rank_votes(vote, order, leaf_prior(targets, {pid}), extra)
    return out


def _loo_embedding(
    kb: KnowledgeBase, placed: list[str], neighbours: int, encoder: Encoder | None
) -> dict[str, list[tuple[str, float]]]:
    import torch  # deferred: heavy, and only the embedding similarity needs it

    enc = encoder if encoder is not None else get_encoder()
    docs, emb = corpus_embeddings(kb, enc)
    row = {d.id: i for i, d in enumerate(docs) if d.kind == "paper"}
    e = emb[torch.tensor([row[pid] for pid in placed])]
    sims = e @ e.T
    sims.fill_diagonal_(float("-inf"))
    top = torch.topk(sims, min(neighbours, len(placed) - 1), dim=1)
    return {
        pid: [
            (placed[j], s)
            for s, j in zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)
        ]
        for i, pid in enumerate(placed)
    }
