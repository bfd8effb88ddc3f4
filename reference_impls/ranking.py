r"""Ranking losses that align the student's likelihoods with a teacher's ordering of responses.

RRHF (Yuan et al., 2023; survey Eq. 15) and PRO (Song et al., 2024; survey Eq. 16) replace a
reward model plus RL by a ranking objective over ``n`` candidate responses per prompt scored
or ordered by a teacher. Inputs are ``[B, n]`` sequence scores :math:`p_i` of the student,
normally length-normalised log-probabilities :math:`\frac{1}{|y_i|}\sum_t \log\pi(y_{i,t}\mid
x, y_{i,<t})` computed by the caller.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import upcast


def rrhf_loss(
    seq_logps: Tensor,
    teacher_scores: Tensor,
    *,
    best_nll: Tensor | None = None,
    sft_weight: float = 1.0,
) -> Tensor:
    r"""RRHF: hinge ranking loss on every mis-ordered pair, plus SFT on the best response.

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_{b} \sum_{r_i < r_j} \max(0,\, p_i - p_j)
            \;+\; \lambda_{\mathrm{sft}} \cdot \frac{1}{B}\sum_b \mathrm{NLL}_b(y_{\mathrm{best}})

    :math:`r` are the teacher's scores (ties impose no constraint); ``best_nll`` ``[B]`` is the
    student's negative log-likelihood of the highest-scored response (added only when given).
    """
    if seq_logps.dim() != 2 or teacher_scores.shape != seq_logps.shape:
        raise ValueError(
            "seq_logps and teacher_scores must both be [B, n]; got "
            f"{tuple(seq_logps.shape)} and {tuple(teacher_scores.shape)}"
        )
    p = upcast(seq_logps)
    worse = teacher_scores.unsqueeze(-1) < teacher_scores.unsqueeze(-2)  # [b, i, j]: r_i < r_j
    hinge = (p.unsqueeze(-1) - p.unsqueeze(-2)).clamp(min=0)  # [b, i, j]: max(0, p_i - p_j)
    loss = torch.where(worse, hinge, 0.0).sum((-2, -1)).mean()
    if best_nll is not None:
        if best_nll.shape != seq_logps.shape[:1]:
            raise ValueError(f"best_nll must be [B] = {tuple(seq_logps.shape[:1])}")
        loss = loss + sft_weight * best_nll.to(p.dtype).mean()
    return loss


def pro_loss(seq_logps_ranked: Tensor) -> Tensor:
    r"""PRO: Plackett-Luce negative log-likelihood of the teacher's ranking (best first).

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_b \sum_{k=1}^{n-1}
            \log\frac{\exp(p_k)}{\sum_{i=k}^{n}\exp(p_i)}

    The denominators are reverse cumulative log-sum-exps, computed stably with
    ``logcumsumexp`` on the reversed scores. ``seq_logps_ranked`` is ``[B, n]``, ``n >= 2``.
    """
    if seq_logps_ranked.dim() != 2 or seq_logps_ranked.shape[-1] < 2:
        raise ValueError(f"expected [B, n] with n >= 2, got {tuple(seq_logps_ranked.shape)}")
    p = upcast(seq_logps_ranked)
    log_tail = p.flip(-1).logcumsumexp(-1).flip(-1)  # log sum_{i >= k} exp(p_i)
    return -(p - log_tail)[:, :-1].sum(-1).mean()
