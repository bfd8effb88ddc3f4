r"""Skew forward and reverse KL of DistiLLM (Ko et al., 2024).

The target of the KL is skewed towards the distribution being scored, which keeps the
divergence and its gradient bounded when the student puts (almost) no mass where the teacher
does, or the reverse. Conventions as in :mod:`reference_impls.kl`: :math:`P` teacher (detached:
a constant target), :math:`Q` student (receives the gradient), no :math:`T^2` factor.
"""

from __future__ import annotations

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
