r"""The alpha-beta divergence of ABKD (Wang et al., 2025), after Cichocki, Cruces and Amari (2011).

One family that contains forward KL :math:`(1, 0)`, reverse KL :math:`(0, 1)`, Amari's
alpha-divergences (:math:`\beta = 1 - \alpha`) and the Hellinger distance
:math:`(\tfrac12, \tfrac12)`: :math:`\alpha` weighs the teacher's probabilities and
:math:`\beta` the student's, so the pair decides how much the student is pushed to cover the
teacher's tail versus to sharpen on its head. Conventions as in :mod:`reference_impls.kl`:
:math:`P` teacher (detached: a constant target), :math:`Q` student (receives the gradient), no
:math:`T^2` factor, per-token sum over the vocabulary, mean over counted tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reference_impls.tokens import log_probs_pair, reduce_tokens


def ab_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.2,
    beta: float = 0.7,
) -> Tensor:
    r"""Alpha-beta divergence :math:`D_{AB}^{(\alpha, \beta)}(P \| Q)`, per token, token mean.

    For :math:`\alpha, \beta, \alpha + \beta \ne 0`:

    .. math:: D_{AB}^{(\alpha,\beta)}(P \| Q) = -\frac{1}{\alpha\beta} \sum_v \Big(
        P_v^\alpha Q_v^\beta - \tfrac{\alpha}{\alpha+\beta} P_v^{\alpha+\beta}
        - \tfrac{\beta}{\alpha+\beta} Q_v^{\alpha+\beta} \Big)

    and on the singular set its continuous limits (Cichocki, Cruces and Amari, 2011):

    - :math:`\beta = 0`: :math:`\frac{1}{\alpha^2} \sum_v \big(P_v^\alpha
      \log \frac{P_v^\alpha}{Q_v^\alpha} - P_v^\alpha + Q_v^\alpha\big)`
    - :math:`\alpha = 0`: :math:`\frac{1}{\beta^2} \sum_v \big(Q_v^\beta
      \log \frac{Q_v^\beta}{P_v^\beta} - Q_v^\beta + P_v^\beta\big)`
    - :math:`\alpha = -\beta`: :math:`\frac{1}{\alpha^2} \sum_v \big(
      \log \frac{Q_v^\alpha}{P_v^\alpha} + \frac{P_v^\alpha}{Q_v^\alpha} - 1\big)`
    - :math:`\alpha = \beta = 0`: :math:`\frac12 \sum_v (\log P_v - \log Q_v)^2`

    :math:`(1, 0)` is forward KL, :math:`(0, 1)` reverse KL, :math:`(\frac12, \frac12)` is
    :math:`2 \sum_v (\sqrt{P_v} - \sqrt{Q_v})^2`. Defaults :math:`(0.2, 0.7)`: the paper's
    GPT-2 scripts. The official code (``ab_div``) writes the limit branches with
    :math:`1/\alpha` or :math:`1/\beta` instead of :math:`1/\alpha^2` or :math:`1/\beta^2`,
    which agrees with the limits only at :math:`(1, 0)` and :math:`(0, 1)`; here every branch
    is the limit of the general formula. The official LLM code applies no temperature (ours
    divides both logits by ``temperature``; 1 is the same). Close to the singular set the
    closed forms lose digits (about machine epsilon over :math:`|\alpha\beta|`,
    :math:`|\alpha + \beta|`, :math:`\alpha^2` or :math:`\beta^2`). Negative exponents make
    the value infinite where a probability is 0; vocabulary slots where both are 0 count 0.
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    # A slot where both distributions are 0 (e.g. vocabulary padding) is in neither support:
    # reading its log-probabilities as 0 makes every branch's term exactly 0, without NaN.
    both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)
    log_p = log_p.masked_fill(both_zero, 0.0)
    log_q = log_q.masked_fill(both_zero, 0.0)
    a, b = alpha, beta
    if a == 0.0 and b == 0.0:
        terms = 0.5 * (log_p - log_q) ** 2
    elif b == 0.0:
        p_a = (a * log_p).exp()
        log_ratio = torch.where(p_a > 0, a * (log_p - log_q), 0.0)  # 0 log 0 = 0
        terms = (p_a * log_ratio - p_a + (a * log_q).exp()) / a**2
    elif a == 0.0:
        q_b = (b * log_q).exp()
        log_ratio = torch.where(q_b > 0, b * (log_q - log_p), 0.0)
        terms = (q_b * log_ratio - q_b + (b * log_p).exp()) / b**2
    elif a + b == 0.0:
        terms = (a * (log_q - log_p) + (a * (log_p - log_q)).exp() - 1.0) / a**2
    else:
        s = a + b
        mixed = (a * log_p + b * log_q).exp()
        terms = -(mixed - a / s * (s * log_p).exp() - b / s * (s * log_q).exp()) / (a * b)
    return reduce_tokens(terms.sum(dim=-1), mask)
