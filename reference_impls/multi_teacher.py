r"""Distillation from several teachers through the weighted mixture of their distributions.

Ensemble distillation matches the student to the ensemble's prediction, here the arithmetic
mixture of the teacher distributions. Baby Llama (Timiryasov & Tastet, 2023) distils from an
ensemble too, but its released code averages the teachers' logits before the softmax (a
normalised geometric mean of the distributions); that variant is :func:`forward_kl` applied
to the averaged logits, not this function.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.tokens import (
    check_pair,
    kl_per_token,
    reduce_tokens,
    tempered_log_softmax,
)


def multi_teacher_kl(
    student_logits: Tensor,
    teacher_logits_list: Sequence[Tensor],
    mask: Tensor | None = None,
    *,
    weights: Sequence[float] | Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    r"""Forward KL from the weighted mixture of the teachers to the student.

    .. math:: \mathrm{KL}(\bar P \| Q), \qquad \bar P = \sum_k w_k P_k, \quad
        P_k = \mathrm{softmax}(z_{t_k} / T)

    ``weights`` default to uniform, must be non-negative and are normalised to sum to 1;
    :math:`\log \bar P = \mathrm{logsumexp}_k(\log w_k + \log P_k)`. Every teacher has the
    student's shape. With one teacher this is :func:`reference_impls.kl.forward_kl`. The
    teachers are detached (constant targets); gradients flow to ``student_logits``.
    """
    n = len(teacher_logits_list)
    if n == 0:
        raise ValueError("teacher_logits_list must hold at least one teacher")
    counted = [check_pair(student_logits, t, mask) for t in teacher_logits_list][0]
    w = torch.ones(n) if weights is None else torch.as_tensor(weights).detach().cpu()
    w = w.to(torch.float64)
    if w.shape != (n,) or not bool(torch.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(
            f"weights must be {n} finite non-negative numbers with a positive sum, got {weights}"
        )
    log_q = tempered_log_softmax(student_logits, temperature)
    log_ps = [tempered_log_softmax(t.detach(), temperature) for t in teacher_logits_list]
    dtype = functools.reduce(torch.promote_types, [x.dtype for x in (log_q, *log_ps)])
    log_w = (w / w.sum()).log().to(dtype=dtype, device=log_q.device)
    mixed = torch.stack([log_w[k] + log_ps[k].to(dtype) for k in range(n)])
    log_p = torch.log_softmax(torch.logsumexp(mixed, dim=0), dim=-1)  # renormalise: rounding
    return reduce_tokens(kl_per_token(log_p, log_q.to(dtype)), counted)
