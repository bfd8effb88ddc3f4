r"""Shared helpers of the token-level distillation losses.

Every token-level loss follows one contract::

    fn(student_logits, teacher_logits, mask=None, *, temperature=1.0, **params) -> scalar

with logits of shape ``[..., V]``, ``mask`` a bool tensor of shape ``[...]`` (True = the token
counts), :math:`P = \mathrm{softmax}(z_t / T)` (teacher), :math:`Q = \mathrm{softmax}(z_s / T)`
(student) and no :math:`T^2` factor. A per-token divergence is summed over the vocabulary and
averaged over counted tokens. The helpers below implement the parts every loss shares: input
checks, float32 upcasting of half inputs, tempered log-softmax, the KL primitive, the log-space
mixture and the masked mean.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

#: Dtypes the losses upcast to float32 before computing.
HALF_DTYPES = (torch.float16, torch.bfloat16)


class TokenLevelLoss(Protocol):
    """The token-level contract (hyperparameters, if any, follow ``temperature`` as keywords)."""

    def __call__(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: float = 1.0,
    ) -> Tensor: ...


def mask_from_labels(labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Bool mask of the tokens that count: True where ``labels != ignore_index``."""
    return labels != ignore_index


def upcast(x: Tensor) -> Tensor:
    """Return ``x`` in float32 if it is float16/bfloat16, unchanged if float32/float64.

    Half precision overflows in ``exp`` and loses the small probabilities that divergences
    depend on, so the losses always compute in at least float32.
    """
    if not x.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {x.dtype}")
    return x.float() if x.dtype in HALF_DTYPES else x


def check_temperature(temperature: float) -> None:
    """Reject a temperature that is not a finite positive number."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")


def check_pair(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None) -> Tensor:
    """Validate a student/teacher pair of logits and return the bool mask to use.

    Both logits must have the same shape ``[..., V]`` (else ``ValueError`` naming both
    shapes); ``mask`` must be a bool tensor of shape ``logits.shape[:-1]``. ``None`` means
    every token counts.
    """
    s_shape, t_shape = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if student_logits.dim() == 0 or teacher_logits.dim() == 0:
        raise ValueError(
            f"logits need a vocabulary dimension [..., V]; got student {s_shape}, teacher {t_shape}"
        )
    if s_shape[-1] == 0:
        raise ValueError(f"the vocabulary is empty: student {s_shape}, teacher {t_shape}")
    if s_shape[-1] != t_shape[-1]:
        raise ValueError(
            f"student and teacher vocabularies differ: student logits {s_shape} have "
            f"V={s_shape[-1]}, teacher logits {t_shape} have V={t_shape[-1]}"
        )
    if s_shape != t_shape:
        raise ValueError(
            f"student and teacher logits must have the same shape, got student {s_shape} "
            f"and teacher {t_shape}"
        )
    return check_mask(mask, student_logits)


def check_mask(mask: Tensor | None, logits: Tensor) -> Tensor:
    """Return ``mask`` (all True if ``None``) after checking its dtype and shape."""
    token_shape = logits.shape[:-1]
    if mask is None:
        return torch.ones(token_shape, dtype=torch.bool, device=logits.device)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = token counts), got dtype {mask.dtype}; "
            "build it with mask_from_labels(labels) or mask.bool()"
        )
    if mask.shape != token_shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must equal logits.shape[:-1] = "
            f"{tuple(token_shape)} (logits {tuple(logits.shape)})"
        )
    return mask


def tempered_log_softmax(logits: Tensor, temperature: float) -> Tensor:
    r"""Log-probabilities :math:`\log \mathrm{softmax}(z / T)` in at least float32."""
    check_temperature(temperature)
    return torch.log_softmax(upcast(logits) / temperature, dim=-1)


def log_probs_pair(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None,
    temperature: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs and return ``(log_q, log_p, mask)``.

    ``log_q`` are the student's tempered log-probabilities (gradients flow through them);
    ``log_p`` the teacher's, computed from detached logits: the teacher is a constant target.
    Both share one dtype (float32 for half inputs, float64 kept).
    """
    mask = check_pair(student_logits, teacher_logits, mask)
    log_q = tempered_log_softmax(student_logits, temperature)
    log_p = tempered_log_softmax(teacher_logits.detach(), temperature)
    dtype = torch.promote_types(log_q.dtype, log_p.dtype)
    return log_q.to(dtype), log_p.to(dtype), mask


def kl_per_token(log_a: Tensor, log_b: Tensor, a: Tensor | None = None) -> Tensor:
    r"""Per-token :math:`\mathrm{KL}(A \| B) = \sum_v A_v (\log A_v - \log B_v)` over the last dim.

    Terms with :math:`A_v = 0` contribute 0 (the convention :math:`0 \log 0 = 0`), also in the
    gradient, so that ``-inf`` logits (e.g. a masked vocabulary slot) do not produce NaN.
    ``a`` is :math:`A = e^{\log A}` when the caller already has it: computing it once matters
    at real vocabulary sizes (``torch.compile`` does not merge two equal ``exp`` calls).
    """
    a = log_a.exp() if a is None else a
    diff = torch.where(a > 0, log_a - log_b, torch.zeros_like(log_a))
    return (a * diff).sum(dim=-1)


def log_mix(a: Tensor, b: Tensor, weight_a: float) -> Tensor:
    r""":math:`\log(w A + (1 - w) B)` elementwise, from the probabilities :math:`A` and :math:`B`.

    One log of the mixture formed in probability space: as accurate as a log-space logsumexp
    wherever the mixture is a normal float, and about half the work, since the divergences
    that mix need :math:`A` and :math:`B` anyway. The mixture is clamped to the smallest
    normal float first: where both probabilities underflow to 0 the log would be ``-inf`` and
    its gradient NaN; such a slot adds less than that float to any divergence either way.
    """
    mixed = weight_a * a + (1.0 - weight_a) * b
    return mixed.clamp(min=torch.finfo(mixed.dtype).tiny).log()


def reduce_tokens(per_token: Tensor, mask: Tensor) -> Tensor:
    r"""Masked mean :math:`\sum_i \ell_i m_i / \max(\sum_i m_i, 1)` as a 0-dim tensor.

    A batch without counted token (all masked, or empty) gives exactly 0 with a zero
    gradient; values at masked positions are ignored even if they are not finite.
    """
    kept = torch.where(mask, per_token, torch.zeros_like(per_token))
    count = mask.sum().clamp(min=1).to(per_token.dtype)
    return kept.sum() / count
