r"""Total variation distance between teacher and student token distributions."""

from __future__ import annotations

from torch import Tensor

from reference_impls.tokens import log_probs_pair, reduce_tokens


def total_variation(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Total variation distance: bounded, symmetric, one of the f-divergences of f-distill.

    .. math:: \mathrm{TV}(P, Q) = \tfrac12 \sum_v |P_v - Q_v| \in [0, 1]

    :math:`P = \mathrm{softmax}(z_t / T)`, :math:`Q = \mathrm{softmax}(z_s / T)`, mean over
    counted tokens. The teacher is detached (constant target); gradients flow to
    ``student_logits``.
    """
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    return reduce_tokens(0.5 * (log_p.exp() - log_q.exp()).abs().sum(dim=-1), mask)
