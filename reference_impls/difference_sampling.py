r"""Difference sampling (MiniPLM, Gu et al., ICLR 2025): teacher-guided pretraining-data selection.

A large teacher :math:`p` and a small *reference* model :math:`p_{\mathrm{ref}}` (trained on a
small part of the corpus) score every document :math:`x` by the difference of their mean
token log-likelihoods,

.. math:: r(x) = \frac{1}{|x|}\sum_t \log p(x_t \mid x_{<t})
    - \frac{1}{|x|}\sum_t \log p_{\mathrm{ref}}(x_t \mid x_{<t}),

i.e. the reference model's mean NLL minus the teacher's. Documents the teacher finds much
likelier than a small model does (hard but learnable) score high; easy text both models know
and noise neither can predict score near 0. The top fraction :math:`\alpha` (0.5 in the paper:
100B -> 50B tokens) is kept and the student is pretrained on it with plain cross-entropy: the
teacher's knowledge reaches the student through the data only, so tokenizers may differ.

This is the official code's score (``compute_difference_scores.py``). The README prints the
ratio :math:`\log p(x) / \log p_{\mathrm{ref}}(x)`, which ranks in the opposite order (for
negative log-likelihoods a *smaller* ratio means a relatively better teacher); we implement
the difference. These are data utilities, not losses: no registry entry.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def difference_scores(
    teacher_token_logprobs: Tensor, reference_token_logprobs: Tensor, mask: Tensor
) -> Tensor:
    r"""Per-document :math:`r(x)`: mean teacher token log-prob minus the reference model's.

    Inputs ``[D, L]``: the log-probability each model gives each token of ``D`` documents
    (right-padded); ``mask`` (bool ``[D, L]``) marks the real tokens, at least one per
    document. Returns ``[D]`` in float32 (float64 kept); no gradient.
    """
    shapes = {tuple(t.shape) for t in (teacher_token_logprobs, reference_token_logprobs, mask)}
    if len(shapes) != 1 or teacher_token_logprobs.dim() != 2:
        raise ValueError(
            "teacher and reference token log-probs and the mask must share one shape [D, L], got "
            f"{[tuple(t.shape) for t in (teacher_token_logprobs, reference_token_logprobs, mask)]}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = real token), got {mask.dtype}")
    counts = mask.sum(dim=-1)
    if bool((counts == 0).any()):
        empty = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"documents {empty} have no real token (all masked)")
    dtype = torch.promote_types(
        torch.promote_types(teacher_token_logprobs.dtype, reference_token_logprobs.dtype),
        torch.float32,
    )
    diff = teacher_token_logprobs.detach().to(dtype) - reference_token_logprobs.detach().to(dtype)
    diff = torch.where(mask, diff, torch.zeros((), dtype=dtype, device=diff.device))
    if not bool(diff.isfinite().all()):
        raise ValueError("token log-probs must be finite at real tokens")
    return diff.sum(dim=-1) / counts.to(dtype)


def select_by_difference(scores: Tensor, fraction: float = 0.5) -> Tensor:
    """Indices of the ``round(fraction * D)`` highest-scoring documents (at least 1), best first.

    Ties keep corpus order (a stable sort), so the selection is deterministic.
    """
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor, got shape {tuple(scores.shape)}")
    if not (0.0 < fraction <= 1.0 and math.isfinite(fraction)):
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if bool(scores.isnan().any()):
        raise ValueError("scores contain NaN")
    keep = max(1, round(fraction * scores.numel()))
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:keep]
