r"""Confidence-aware KL (CAKLD) of BitDistiller (Du et al., 2024).

BitDistiller blends reverse and forward KL with a single coefficient :math:`\gamma`, the
teacher's average confidence on the reference tokens, measured once on the training data: a
confident teacher (peaked :math:`P`) favours the mode-seeking reverse KL, an unsure one the
mean-seeking forward KL.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import (
    check_mask,
    kl_per_token,
    log_probs_pair,
    mask_from_labels,
    reduce_tokens,
    tempered_log_softmax,
)


def confidence_aware_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    gamma: float | Tensor,
) -> Tensor:
    r"""Confidence-aware KL: a fixed convex combination of reverse and forward KL.

    .. math:: \mathrm{CAKLD}_\gamma
        = \gamma\, \mathrm{KL}(Q \| P) + (1 - \gamma)\, \mathrm{KL}(P \| Q)

    :math:`\gamma \in [0, 1]`, a float or a 0-dim tensor (detached: a constant), typically
    from :func:`teacher_confidence`. The teacher is detached (constant target); gradients flow
    to ``student_logits``.
    """
    if isinstance(gamma, Tensor):
        if gamma.dim() != 0:
            raise ValueError(f"gamma must be a float or a 0-dim tensor, got shape {gamma.shape}")
        gamma = gamma.detach()
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {float(gamma)}")
    log_q, log_p, mask = log_probs_pair(student_logits, teacher_logits, mask, temperature)
    per_token = gamma * kl_per_token(log_q, log_p) + (1 - gamma) * kl_per_token(log_p, log_q)
    return reduce_tokens(per_token, mask)


def teacher_confidence(
    teacher_logits: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""BitDistiller's :math:`\gamma`: the teacher's mean probability of the reference tokens.

    .. math:: \gamma = \frac{1}{|\mathcal{C}|} \sum_{i \in \mathcal{C}} P_i(y_i)

    over the counted tokens :math:`\mathcal{C}` (``labels != ignore_index``), with
    :math:`P_i = \mathrm{softmax}(z_{t,i} / T)`. Returns a detached 0-dim float tensor (float32
    for half inputs), 0 if no token counts. ``labels`` has shape ``teacher_logits.shape[:-1]``
    and is already aligned with the logits (shift it beforehand for next-token prediction).
    """
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    mask = check_mask(mask_from_labels(labels, ignore_index), teacher_logits)
    vocab = teacher_logits.shape[-1]
    counted = labels[mask]
    if counted.numel() and (counted.min() < 0 or counted.max() >= vocab):
        raise ValueError(f"labels of counted tokens must lie in [0, {vocab}), got {counted}")
    with torch.no_grad():
        log_p = tempered_log_softmax(teacher_logits, temperature)
        index = torch.where(mask, labels, torch.zeros_like(labels)).unsqueeze(-1)
        p_label = log_p.gather(-1, index).squeeze(-1).exp()
        return reduce_tokens(p_label, mask)
