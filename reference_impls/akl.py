r"""Adaptive KL (AKL) of Wu et al. (2024), "Rethinking Kullback-Leibler Divergence in KD for LLMs".

Forward KL mostly fits the head of the teacher distribution early in training, reverse KL the
tail; AKL mixes the two per token with weights given by how badly each part is fitted.

Two incompatible versions circulate. They differ in which token goes to the head when the
teacher's cumulative mass crosses :math:`\mu`: the authors' released code (followed here) keeps
in the head only the tokens whose cumulative mass is :math:`\le \mu`, always including the
top-1 token, so the crossing token falls in the tail; other readings and reimplementations
put the crossing token in the head (head = smallest prefix whose mass reaches :math:`\mu`).
The two give different weights whenever the head gap changes across that token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import kl_per_token, log_probs_pair, reduce_tokens


def adaptive_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    mu: float = 0.5,
) -> Tensor:
    r"""Per-token mixture of forward and reverse KL weighted by the head and tail gaps.

    Sort the vocabulary by :math:`P` in descending order (stable: ties keep vocabulary order).
    The head :math:`H` holds the positions whose cumulative teacher mass is :math:`\le \mu`,
    plus always the top-1 token; the tail is the rest. With
    :math:`g_{head} = \sum_{v \in H} |P_v - Q_v|` and
    :math:`g_{tail} = \sum_{v \notin H} |P_v - Q_v|`:

    .. math:: \mathrm{AKL} = \frac{g_{head}}{g_{head} + g_{tail}} \mathrm{KL}(P \| Q)
        + \frac{g_{tail}}{g_{head} + g_{tail}} \mathrm{KL}(Q \| P)

    The weights are computed from a detached :math:`Q` and held constant (stop-gradient); they
    are 1/2 and 1/2 where :math:`P = Q`. The teacher is detached (constant target); gradients
    flow to ``student_logits`` through the two KL terms only.
    """
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must lie in [0, 1], got {mu}")
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    with torch.no_grad():
        p_sorted, order = log_p.exp().sort(dim=-1, descending=True, stable=True)
        gap = (p_sorted - log_q.exp().gather(-1, order)).abs()
        head = p_sorted.cumsum(dim=-1) <= mu
        head[..., 0] = True
        g_head, g_tail = (gap * head).sum(dim=-1), (gap * ~head).sum(dim=-1)
        total = g_head + g_tail
        safe_total = torch.where(total > 0, total, torch.ones_like(total))
        w_head = torch.where(total > 0, g_head / safe_total, torch.full_like(total, 0.5))
        w_tail = torch.where(total > 0, g_tail / safe_total, torch.full_like(total, 0.5))
    per_token = w_head * kl_per_token(log_p, log_q) + w_tail * kl_per_token(log_q, log_p)
    return reduce_tokens(per_token, mask)
