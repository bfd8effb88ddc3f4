r"""Jensen-Shannon divergence and its generalised (beta-skewed) form between teacher and student.

Conventions as in :mod:`reference_impls.kl`: :math:`P = \mathrm{softmax}(z_t / T)` (teacher,
detached: a constant target), :math:`Q = \mathrm{softmax}(z_s / T)` (student, receives the
gradient), no :math:`T^2` factor, sum over the vocabulary, mean over counted tokens.
"""

from __future__ import annotations

from torch import Tensor

from reference_impls.tokens import kl_per_token, log_mix, log_probs_pair, reduce_tokens


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    r"""Generalised JSD of GKD (Agarwal et al., 2024), in the convention of TRL and Liger.

    For :math:`0 < \beta < 1`, with the mixture :math:`M = \beta P + (1 - \beta) Q`:

    .. math:: \mathrm{JSD}_\beta = \beta\, \mathrm{KL}(P \| M) + (1 - \beta)\, \mathrm{KL}(Q \| M)

    and by definition :math:`\mathrm{JSD}_0 = \mathrm{KL}(P \| Q)` (forward KL) and
    :math:`\mathrm{JSD}_1 = \mathrm{KL}(Q \| P)` (reverse KL). The endpoints are a jump, not a
    limit: as :math:`\beta \to 0` the weighted value tends to 0 (it behaves like
    :math:`\beta\, \mathrm{KL}(P \| Q)`), and as :math:`\beta \to 1` like
    :math:`(1 - \beta)\, \mathrm{KL}(Q \| P)`. TRL and Liger special-case the endpoints the
    same way. :math:`M` is formed in probability space and its log taken once. The teacher is
    detached (constant target); gradients flow to ``student_logits``.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    if beta == 0.0:
        return reduce_tokens(kl_per_token(log_p, log_q), mask)
    if beta == 1.0:
        return reduce_tokens(kl_per_token(log_q, log_p), mask)
    p, q = log_p.exp(), log_q.exp()
    log_m = log_mix(p, q, beta)
    per_token = beta * kl_per_token(log_p, log_m, p) + (1 - beta) * kl_per_token(log_q, log_m, q)
    return reduce_tokens(per_token, mask)


def js_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Jensen-Shannon divergence, symmetric and bounded by :math:`\log 2`.

    .. math:: \mathrm{JS}(P, Q) = \tfrac12 \mathrm{KL}(P \| M) + \tfrac12 \mathrm{KL}(Q \| M),
        \qquad M = \tfrac12 (P + Q)

    Equal to :func:`generalized_jsd` with :math:`\beta = 0.5`. The teacher is detached
    (constant target); gradients flow to ``student_logits``.
    """
    return generalized_jsd(student_logits, teacher_logits, mask, temperature=temperature, beta=0.5)
