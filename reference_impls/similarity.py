r"""Feature-level similarity functions (survey Table 2): match hidden states or attention maps.

White-box feature distillation compares intermediate representations instead of output
distributions. Hidden states are ``[..., H]``; when the student width differs from the
teacher's, an explicit ``projection`` maps the student into the teacher space (a
``torch.nn.Module`` or a ``[H_s, H_t]`` matrix, applied as ``student @ W``). Token-wise
functions average over the counted tokens of an optional ``mask`` of shape ``[...]`` (bool or
0/1) and return 0 with a zero gradient when no token is counted. As in the token-level losses
the teacher is a constant target (detached). Half inputs are computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference_impls.tokens import reduce_tokens, upcast

Projection = nn.Module | Tensor | None


def _align(student: Tensor, teacher: Tensor, projection: Projection) -> tuple[Tensor, Tensor]:
    """Upcast half inputs, detach the teacher, project the student, check the widths agree."""
    student, teacher = upcast(student), upcast(teacher).detach()
    if isinstance(projection, Tensor):
        student = student @ projection.to(student.dtype)
    elif projection is not None:
        student = projection(student)
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"hidden sizes differ (student {student.shape[-1]}, teacher {teacher.shape[-1]}); "
            "pass a projection ([H_s, H_t] matrix or nn.Module) to map the student"
        )
    return student, teacher.to(student.dtype)


def _masked_token_mean(per_token: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``per_token`` over counted positions; 0 with zero gradient when none."""
    if mask is None:
        mask = torch.ones_like(per_token, dtype=torch.bool)
    if mask.shape != per_token.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must be {tuple(per_token.shape)}")
    return reduce_tokens(per_token, mask.bool())


def _token_shapes(student: Tensor, teacher: Tensor) -> None:
    if student.shape[:-1] != teacher.shape[:-1]:
        raise ValueError(
            f"token dimensions differ: student {tuple(student.shape)}, "
            f"teacher {tuple(teacher.shape)}"
        )


def hidden_mse(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    *,
    projection: Projection = None,
) -> Tensor:
    r"""Per-token mean squared error, :math:`\frac{1}{H}\|W h^S_t - h^T_t\|_2^2`, token mean."""
    _token_shapes(student_hidden, teacher_hidden)
    s, t = _align(student_hidden, teacher_hidden, projection)
    return _masked_token_mean((s - t).pow(2).mean(-1), mask)


def hidden_l1(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    *,
    projection: Projection = None,
) -> Tensor:
    r"""Per-token mean absolute error, :math:`\frac{1}{H}\|W h^S_t - h^T_t\|_1`, token mean."""
    _token_shapes(student_hidden, teacher_hidden)
    s, t = _align(student_hidden, teacher_hidden, projection)
    return _masked_token_mean((s - t).abs().mean(-1), mask)


def hidden_cosine(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    *,
    projection: Projection = None,
) -> Tensor:
    r"""Per-token cosine distance, :math:`1 - \frac{\langle W h^S_t, h^T_t\rangle}
    {\|W h^S_t\|\,\|h^T_t\|}`, token mean (norms floored at ``1e-8``)."""
    _token_shapes(student_hidden, teacher_hidden)
    s, t = _align(student_hidden, teacher_hidden, projection)
    return _masked_token_mean(1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8), mask)


def feature_cross_entropy(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    *,
    projection: Projection = None,
) -> Tensor:
    r"""Cross-entropy between softmax-normalised features, token mean.

    .. math::
        \ell_t = -\sum_{j=1}^{H} \mathrm{softmax}(h^T_t)_j \, \log\mathrm{softmax}(W h^S_t)_j
    """
    _token_shapes(student_hidden, teacher_hidden)
    s, t = _align(student_hidden, teacher_hidden, projection)
    return _masked_token_mean(-(t.softmax(-1) * s.log_softmax(-1)).sum(-1), mask)


def mmd(
    student_feats: Tensor,
    teacher_feats: Tensor,
    mask: Tensor | None = None,
    *,
    bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
    projection: Projection = None,
) -> Tensor:
    r"""Unbiased squared maximum mean discrepancy between the *sets* of feature vectors.

    The counted tokens of the student form :math:`X = \{x_i\}_{i=1}^m` and those of the
    teacher :math:`Y = \{y_j\}_{j=1}^n`; token order is irrelevant. With the multi-bandwidth
    Gaussian kernel :math:`k(a, b) = \sum_{\sigma} \exp(-\|a - b\|^2 / 2\sigma^2)`,

    .. math::
        \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)}\sum_{i \ne i'} k(x_i, x_{i'})
            + \frac{1}{n(n-1)}\sum_{j \ne j'} k(y_j, y_{j'})
            - \frac{2}{mn}\sum_{i,j} k(x_i, y_j).

    It can be slightly negative. Without a mask the two sets may have different sizes (any
    leading shapes); with one, the same ``mask`` selects tokens from both. Fewer than two
    vectors in either set gives 0 with a zero gradient. Bandwidths are in feature units, so
    normalise the features first when their scale is large.
    """
    s, t = _align(student_feats, teacher_feats, projection)
    if mask is not None:
        _token_shapes(student_feats, teacher_feats)
        if mask.shape != s.shape[:-1]:
            raise ValueError(f"mask {tuple(mask.shape)} must be {tuple(s.shape[:-1])}")
        s, t = s[mask.bool()], t[mask.bool()]
    x, y = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        return s.flatten()[:0].sum()  # 0, connected to the graph, zero gradient

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        sq = (a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1) - 2.0 * a @ b.T).clamp(min=0)
        return torch.stack([torch.exp(-sq / (2.0 * bw**2)) for bw in bandwidths]).sum(0)

    def off_diagonal_mean(k: Tensor) -> Tensor:
        eye = torch.eye(k.shape[0], dtype=torch.bool, device=k.device)
        return torch.where(eye, 0.0, k).sum() / (k.shape[0] * (k.shape[0] - 1))

    return (
        off_diagonal_mean(kernel(x, x))
        + off_diagonal_mean(kernel(y, y))
        - 2.0 * kernel(x, y).mean()
    )


def attention_kl(student_attn: Tensor, teacher_attn: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""MiniLM attention transfer: KL(teacher || student) between attention distributions.

    Inputs are probabilities ``[B, heads, T, T]`` (each query row sums to 1); ``mask`` ``[B, T]``
    marks counted query positions. Averaged over heads and counted queries:

    .. math::
        \mathcal{L} = \frac{1}{A_h |\mathcal{T}|} \sum_{a=1}^{A_h} \sum_{t \in \mathcal{T}}
            \sum_{j} A^T_{a,t,j} \big(\log A^T_{a,t,j} - \log A^S_{a,t,j}\big)

    with :math:`0 \log 0 = 0`: both probabilities are floored at the smallest normal float before
    the log, so zeros give finite values and gradients (a student zero where the teacher is
    positive costs about ``87 * A^T`` in float32 instead of ``inf``).
    """
    if student_attn.dim() != 4 or student_attn.shape != teacher_attn.shape:
        raise ValueError(
            "student_attn and teacher_attn must both be [B, heads, T, T]; got "
            f"{tuple(student_attn.shape)} and {tuple(teacher_attn.shape)}"
        )
    s = upcast(student_attn)
    t = teacher_attn.detach().to(s.dtype)
    tiny = torch.finfo(s.dtype).tiny
    per_row = (t * (t.clamp(min=tiny).log() - s.clamp(min=tiny).log())).sum(-1)  # [B, h, T]
    if mask is not None and mask.shape != (s.shape[0], s.shape[2]):
        raise ValueError(f"mask must be [B, T] = {(s.shape[0], s.shape[2])}")
    row_mask = None if mask is None else mask.bool().unsqueeze(1).expand_as(per_row)
    return _masked_token_mean(per_row, row_mask)
