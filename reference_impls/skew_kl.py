r"""Skew forward and reverse KL of DistiLLM (Ko et al., 2024) and DistiLLM-2's contrastive loss.

The target of the KL is skewed towards the distribution being scored, which keeps the
divergence and its gradient bounded when the student puts (almost) no mass where the teacher
does, or the reverse. Conventions as in :mod:`reference_impls.kl`: :math:`P` teacher (detached:
a constant target), :math:`Q` student (receives the gradient), no :math:`T^2` factor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import kl_per_token, log_mix, log_probs_pair, reduce_tokens


def _check_alpha(alpha: float) -> None:
    """Accept a skew in [0, 1); alpha = 1 would make the divergence identically 0."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1) (alpha = 1 gives a constant 0), got {alpha}")


def skew_forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.1,
) -> Tensor:
    r"""Skew forward KL: forward KL to a student distribution mixed with the teacher.

    .. math:: \mathrm{SKL}_\alpha(P \| Q) = \mathrm{KL}(P \,\|\, \alpha P + (1 - \alpha) Q)

    :math:`\alpha \in [0, 1)`; :math:`\alpha = 0` is forward KL. DistiLLM's code adds an
    entropy term to its "skew forward KL"; this is the divergence alone. The teacher is
    detached (constant target); gradients flow to ``student_logits``.
    """
    _check_alpha(alpha)
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    p = log_p.exp()
    return reduce_tokens(kl_per_token(log_p, log_mix(p, log_q.exp(), alpha), p), mask)


def skew_reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.1,
) -> Tensor:
    r"""Skew reverse KL: reverse KL to a teacher distribution mixed with the student.

    .. math:: \mathrm{SRKL}_\alpha(Q \| P) = \mathrm{KL}(Q \,\|\, \alpha Q + (1 - \alpha) P)

    :math:`\alpha \in [0, 1)`; :math:`\alpha = 0` is reverse KL. As for
    :func:`skew_forward_kl`, DistiLLM's added entropy term is left out. The teacher is
    detached (constant target); gradients flow to ``student_logits``.
    """
    _check_alpha(alpha)
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    q = log_q.exp()
    return reduce_tokens(kl_per_token(log_q, log_mix(q, log_p.exp(), alpha), q), mask)


def _sequence_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Token mean within each sequence (last dim), then mean over sequences with a token.

    A batch without any counted token gives 0 with a zero gradient, as :func:`reduce_tokens`.
    """
    if per_token.dim() < 1:
        raise ValueError("DistiLLM-2 needs logits of shape [..., L, V]: a sequence dimension")
    kept = torch.where(mask, per_token, torch.zeros_like(per_token))
    counts = mask.sum(dim=-1)
    per_sequence = kept.sum(dim=-1) / counts.clamp(min=1).to(per_token.dtype)
    return reduce_tokens(per_sequence, counts > 0)


def distillm2_loss(
    student_logits_t: Tensor,
    teacher_logits_t: Tensor,
    mask_t: Tensor | None,
    student_logits_s: Tensor,
    teacher_logits_s: Tensor,
    mask_s: Tensor | None,
    *,
    alpha: float = 0.1,
    b: float = 1.0,
) -> Tensor:
    r"""DistiLLM-2's contrastive loss (CALD, Ko et al., 2025): skew KL up on teacher responses,
    skew reverse KL down on the student's own responses.

    .. math:: \mathcal{L} = (2 - b)\, \frac{1}{|y_T|} \sum_{t} \mathrm{KL}\big(P \,\|\,
        \alpha P + (1 - \alpha) Q\big) + b\, \frac{1}{|y_S|} \sum_{t} \mathrm{KL}\big(Q \,\|\,
        (1 - \alpha) P + \alpha\, \mathrm{sg}(Q)\big)

    ``*_t`` are the logits ``[B, L, V]`` and mask ``[B, L]`` on teacher responses :math:`y_T`
    ("chosen"), ``*_s`` on student responses :math:`y_S` ("rejected"); the two batches may
    differ in size and length. Each term is a token mean within every sequence (counted
    tokens), then a mean over the sequences that have one. Two choices follow the official
    code (``loss_type="distillm_v2"``): the student's share of the skew *reverse* KL's mixture
    is stop-gradient, while in the skew *forward* KL's mixture it carries the gradient (it is
    the only place :math:`Q` appears there). Defaults: :math:`\alpha = 0.1` for both terms,
    :math:`b = 1` (:func:`distillm2_b_schedule` gives the optional gradual :math:`b`); no
    temperature. :math:`\alpha = 0` gives forward KL on :math:`y_T` plus reverse KL on
    :math:`y_S`. The teacher is detached (constant target).
    """
    _check_alpha(alpha)
    if not 0.0 <= b <= 2.0:
        raise ValueError(f"b must lie in [0, 2] (the weights are 2 - b and b), got {b}")
    log_q, log_p, mask_t = log_probs_pair(student_logits_t, teacher_logits_t, mask_t, 1.0)
    p = log_p.exp()
    skl = kl_per_token(log_p, log_mix(p, log_q.exp(), alpha), p)
    log_q, log_p, mask_s = log_probs_pair(student_logits_s, teacher_logits_s, mask_s, 1.0)
    q = log_q.exp()
    srkl = kl_per_token(log_q, log_mix(q.detach(), log_p.exp(), alpha), q)
    return (2.0 - b) * _sequence_mean(skl, mask_t) + b * _sequence_mean(srkl, mask_s)


def distillm2_b_schedule(step: int, total_steps: int) -> float:
    r"""DistiLLM-2's optional gradual weight :math:`b = 1 + \tfrac12 \min(1, 2s/S)` at step s of S.

    It moves weight from the teacher-response term to the student-response term over the first
    half of training (the official code's ``gradual_beta``, off by default: :math:`b = 1`).
    """
    if total_steps < 1 or step < 0:
        raise ValueError(f"need step >= 0 and total_steps >= 1, got {step} and {total_steps}")
    return 1.0 + 0.5 * min(1.0, 2.0 * step / total_steps)
