r"""Forward KL, reverse KL and soft cross-entropy between teacher and student token distributions.

Conventions shared by all token-level losses: :math:`P = \mathrm{softmax}(z_t / T)` is the
teacher, :math:`Q = \mathrm{softmax}(z_s / T)` the student, no :math:`T^2` factor; the
per-token value is summed over the vocabulary and averaged over the tokens where ``mask`` is
True (0 with zero gradient if none counts). Gradients flow to the student logits only: the
teacher logits are detached and act as a constant target. Half inputs are computed and
returned in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import kl_per_token, log_probs_pair, reduce_tokens


def forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Forward KL, the classic distillation loss (mean-seeking): the student covers the teacher.

    .. math:: \mathrm{KL}(P \| Q) = \sum_v P_v (\log P_v - \log Q_v)

    The teacher is detached (constant target); gradients flow to ``student_logits``.
    """
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    return reduce_tokens(kl_per_token(log_p, log_q), mask)


def reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Reverse KL (mode-seeking): the student concentrates on the teacher's likely tokens.

    .. math:: \mathrm{KL}(Q \| P) = \sum_v Q_v (\log Q_v - \log P_v)

    The teacher is detached (constant target); gradients flow to ``student_logits``.
    """
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    return reduce_tokens(kl_per_token(log_q, log_p), mask)


def soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Cross-entropy of the student against the teacher's soft labels.

    .. math:: H(P, Q) = -\sum_v P_v \log Q_v = \mathrm{KL}(P \| Q) + H(P)

    It has the gradient of forward KL but not its value (the teacher entropy :math:`H(P)` is
    added); DistiLLM's code calls this quantity "forward_kl". The teacher is detached
    (constant target); gradients flow to ``student_logits``.
    """
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    p = log_p.exp()
    p_log_q = torch.where(p > 0, p * log_q, torch.zeros_like(p))  # 0 * log 0 = 0
    return reduce_tokens(-p_log_q.sum(dim=-1), mask)
