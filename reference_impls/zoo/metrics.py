r"""What the loss zoo measures on held-out contexts: divergences, entropy, mass, modes.

Every function takes the teacher's and the student's next-token **log**-probabilities
``log_p``, ``log_q`` of shape ``[N, V]`` (one row per context; rows sum to 1 after ``exp``)
and returns a float averaged uniformly over the ``N`` contexts. Convention
:math:`0 \log 0 = 0`. ``modes`` is a bool ``[N, V]`` marking each context's teacher modes
(in the zoo: the peak tokens of the explicit mixture, see :mod:`reference_impls.zoo.language`).

.. math::
    \mathrm{FKL} = \overline{\textstyle\sum_v p_v (\log p_v - \log q_v)}, \quad
    \mathrm{RKL} = \overline{\textstyle\sum_v q_v (\log q_v - \log p_v)}, \quad
    \rho_H = \overline{H(q)} \,/\, \overline{H(p)}

.. math::
    \text{hallucination} = \overline{\textstyle\sum_{v : p_v < 10^{-3}} q_v}, \quad
    \text{top-1} = \overline{[\arg\max q = \arg\max p]}, \quad
    \text{recall} = \frac{\sum_n |\{v \in M_n : q_{n,v} \ge \tau\}|}{\sum_n |M_n|}

where the bar is the mean over contexts, :math:`M_n` the modes of context :math:`n` and
:math:`\tau = 0.05` (a mode counts as recalled if the student would sample it at least once in
20 draws). The head and tail gaps split :math:`\sum_v |p_v - q_v| = 2\,\mathrm{TV}` into the
modes (head) and the other tokens (tail), the two parts AKL (Wu et al., 2024) balances.
This module depends on torch alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.zoo.results import (
    HALLUCINATION_THRESHOLD,
    RECALL_THRESHOLD,
)


def _check(log_p: Tensor, log_q: Tensor) -> None:
    """Reject log-probabilities that do not share one ``[N, V]`` shape."""
    if log_p.shape != log_q.shape or log_p.dim() != 2:
        raise ValueError(
            f"log_p and log_q must share one [N, V] shape, got {tuple(log_p.shape)} and "
            f"{tuple(log_q.shape)}"
        )


def _kl_rows(log_a: Tensor, log_b: Tensor) -> Tensor:
    """Per-row :math:`\\mathrm{KL}(A \\| B)` with :math:`0 \\log 0 = 0`."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), 0.0).sum(-1)


def entropy(log_p: Tensor) -> Tensor:
    """Per-row entropy :math:`-\\sum_v p_v \\log p_v` in nats (``[N]``)."""
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, 0.0).sum(-1)


def forward_kl_mean(log_p: Tensor, log_q: Tensor) -> float:
    """Mean KL(teacher || student) over the contexts."""
    _check(log_p, log_q)
    return float(_kl_rows(log_p, log_q).mean())


def reverse_kl_mean(log_p: Tensor, log_q: Tensor) -> float:
    """Mean KL(student || teacher) over the contexts."""
    _check(log_p, log_q)
    return float(_kl_rows(log_q, log_p).mean())


def entropy_ratio(log_p: Tensor, log_q: Tensor) -> float:
    """Mean student entropy over mean teacher entropy (a ratio of means, not a mean of ratios)."""
    _check(log_p, log_q)
    return float(entropy(log_q).mean() / entropy(log_p).mean())


def hallucination_mass(
    log_p: Tensor, log_q: Tensor, threshold: float = HALLUCINATION_THRESHOLD
) -> float:
    """Mean student mass on the tokens the teacher gives less than ``threshold``."""
    _check(log_p, log_q)
    ruled_out = log_p.exp() < threshold
    return float(torch.where(ruled_out, log_q.exp(), 0.0).sum(-1).mean())


def top1_agreement(log_p: Tensor, log_q: Tensor) -> float:
    """Share of contexts where student and teacher have the same most likely token."""
    _check(log_p, log_q)
    return float((log_p.argmax(-1) == log_q.argmax(-1)).float().mean())


def mode_recall(log_q: Tensor, modes: Tensor, threshold: float = RECALL_THRESHOLD) -> float:
    """Share of all teacher modes (pooled over contexts) where the student puts >= ``threshold``."""
    if modes.shape != log_q.shape or modes.dtype != torch.bool:
        raise ValueError("modes must be a bool tensor shaped like log_q")
    n_modes = int(modes.sum())
    if n_modes == 0:
        raise ValueError("no teacher mode given")
    return int((modes & (log_q.exp() >= threshold)).sum()) / n_modes


def head_tail_gaps(log_p: Tensor, log_q: Tensor, modes: Tensor) -> tuple[float, float]:
    """Mean ``(sum over modes, sum over the rest)`` of ``|p - q|``: where the mismatch sits."""
    _check(log_p, log_q)
    gap = (log_p.exp() - log_q.exp()).abs()
    head = torch.where(modes, gap, 0.0).sum(-1).mean()
    tail = torch.where(modes, 0.0, gap).sum(-1).mean()
    return float(head), float(tail)


def distribution_metrics(log_p: Tensor, log_q: Tensor, modes: Tensor) -> dict[str, float]:
    """All :data:`~reference_impls.zoo.results.METRICS` of one student on one set of contexts."""
    _check(log_p, log_q)
    log_p, log_q = log_p.double(), log_q.double()  # sums over V of tiny terms: keep precision
    head, tail = head_tail_gaps(log_p, log_q, modes)
    return {
        "forward_kl": forward_kl_mean(log_p, log_q),
        "reverse_kl": reverse_kl_mean(log_p, log_q),
        "student_entropy": float(entropy(log_q).mean()),
        "teacher_entropy": float(entropy(log_p).mean()),
        "entropy_ratio": entropy_ratio(log_p, log_q),
        "hallucination_mass": hallucination_mass(log_p, log_q),
        "top1_agreement": top1_agreement(log_p, log_q),
        "mode_recall": mode_recall(log_q, modes),
        "head_gap": head,
        "tail_gap": tail,
    }
