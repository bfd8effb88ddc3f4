r"""Forward KL, reverse KL, soft cross-entropy, and TAID's KL to an interpolated teacher.

Conventions shared by all token-level losses: :math:`P = \mathrm{softmax}(z_t / T)` is the
teacher, :math:`Q = \mathrm{softmax}(z_s / T)` the student, no :math:`T^2` factor; the
per-token value is summed over the vocabulary and averaged over the tokens where ``mask`` is
True (0 with zero gradient if none counts). Gradients flow to the student logits only: the
teacher logits are detached and act as a constant target. Half inputs are computed and
returned in float32.
"""

from __future__ import annotations

import math

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


def taid_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    t: float,
) -> Tensor:
    r"""TAID (Shing et al., 2025): forward KL to a target interpolated from student to teacher.

    .. math:: P_t = \mathrm{softmax}\big((1 - t)\,\mathrm{sg}(\log Q) + t \log P\big)
        \propto \mathrm{sg}(Q)^{1 - t} P^{t}, \qquad
        \mathrm{TAID}_t = \mathrm{KL}(P_t \,\|\, Q)

    Interpolating the tempered log-probabilities is interpolating the tempered logits
    :math:`z / T` (softmax ignores a per-token constant). :math:`t \in [0, 1]` grows during
    training (:class:`TAIDSchedule`): :math:`t = 1` is :func:`forward_kl` exactly; at
    :math:`t = 0` the target is the detached student itself, so value and gradient are 0. The
    official code applies no temperature (our ``temperature=1``), and returns the cross-entropy
    :math:`-\sum_v P_{t,v} \log Q_v` instead of this KL: the two differ by the entropy of the
    constant target :math:`P_t`, so their gradients agree. The teacher and the student's share
    of the target are detached; gradients flow to ``student_logits`` through :math:`Q` only.
    """
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1] (0: the student itself, 1: the teacher), got {t}")
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    if t == 1.0:  # the endpoints are written out: 0 * log 0 would be NaN at -inf logits
        log_target = log_p
    elif t == 0.0:
        log_target = log_q.detach()
    else:
        log_target = torch.log_softmax((1.0 - t) * log_q.detach() + t * log_p, dim=-1)
    return reduce_tokens(kl_per_token(log_target, log_q), mask)


def _sigmoid(x: float) -> float:
    """The logistic function without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class TAIDSchedule:
    r"""TAID's adaptive interpolation parameter :math:`t`, updated once per optimiser step.

    After the loss :math:`J_n` of step :math:`n` (0-based: :math:`n` steps were taken before):

    .. math::
        \delta_n = \frac{J_{n-1} - J_n}{J_{n-1} + 10^{-15}}, \quad
        m_n = \beta\, m_{n-1} + (1 - \beta)\, \delta_n, \quad
        \Delta t = \alpha\, \sigma(m_n)\, (1 - t_n),

        t_{n+1} = \min\Big(t_\mathrm{end},\ \max\big(t_\mathrm{start}
            + (t_\mathrm{end} - t_\mathrm{start}) \tfrac{n}{N},\ t_n + \Delta t\big)\Big)

    with :math:`m_{-1} = 0` and :math:`N` = ``total_steps``: the relative loss decrease,
    smoothed with momentum :math:`\beta`, sets a step :math:`\Delta t \ge 0`; :math:`t` never
    decreases, never falls below the linear schedule and is clamped at :math:`t_\mathrm{end}`.
    The first call only records :math:`J_0`. This restates ``TAID.update_t`` of the official
    code (defaults :math:`\alpha = 5 \times 10^{-4}`, :math:`\beta = 0.99`,
    :math:`t_\mathrm{end} = 1`; :math:`t_\mathrm{start}` 0.4 or 0.2 in the paper's runs) in
    float64. Difference: the official code feeds it the cross-entropy it returns, while the
    demos and the zoo feed the logged :func:`taid_loss` (the KL), whose relative changes are
    larger; :math:`\sigma < 1` bounds :math:`\Delta t \le \alpha (1 - t)` either way.
    """

    def __init__(
        self,
        t_start: float,
        t_end: float = 1.0,
        alpha: float = 5e-4,
        momentum: float = 0.99,
        *,
        total_steps: int,
    ) -> None:
        if not 0.0 <= t_start <= t_end <= 1.0:
            raise ValueError(f"need 0 <= t_start <= t_end <= 1, got {t_start} and {t_end}")
        if not (0.0 <= alpha <= 1.0 and 0.0 <= momentum < 1.0):
            raise ValueError(
                f"need alpha in [0, 1] and momentum in [0, 1), got {alpha}, {momentum}"
            )
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.t_start, self.t_end, self.alpha, self.momentum = t_start, t_end, alpha, momentum
        self.total_steps = total_steps
        #: The current interpolation parameter.
        self.t = t_start
        #: The smoothed relative loss change :math:`m_n`.
        self.smoothed_change = 0.0
        self.previous_loss: float | None = None

    def update(self, loss: float, step: int) -> float:
        """Record the loss of optimiser step ``step`` (0-based) and return the new ``t``."""
        if self.previous_loss is None:
            self.previous_loss = loss
            return self.t
        change = (self.previous_loss - loss) / (self.previous_loss + 1e-15)
        self.smoothed_change = self.momentum * self.smoothed_change + (1 - self.momentum) * change
        delta = self.alpha * _sigmoid(self.smoothed_change) * (1.0 - self.t)
        floor = self.t_start + (self.t_end - self.t_start) * step / self.total_steps
        self.t = min(self.t_end, max(floor, self.t + delta))
        self.previous_loss = loss
        return self.t

    def __call__(self, step: int, last_loss: float | None) -> dict[str, float]:
        """The registry's schedule contract: ``{"t": ...}`` for ``step`` after step - 1's loss."""
        if last_loss is not None:
            self.update(last_loss, step - 1)
        return {"t": self.t}
