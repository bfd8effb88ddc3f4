r"""Universal Logit Distillation (Boizard et al., 2024): distillation across tokenizers.

When teacher and student use different vocabularies, their distributions live on different
supports and no token-wise KL exists. ULD compares them through a closed-form approximation
of the Wasserstein-1 distance that ignores token identity: sort both probability vectors in
decreasing order, zero-pad the smaller vocabulary, and take the :math:`\ell_1` distance.
Sequences are aligned naively: the k-th counted student position faces the k-th counted
teacher position, and the longer sequence is truncated. The paper adds this term to the
student's ordinary cross-entropy; only the distillation term is implemented here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reference_impls.tokens import check_temperature, upcast


def uld_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_mask: Tensor,
    teacher_mask: Tensor,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Sorted-probability :math:`\ell_1` distance between student and teacher, cross-tokenizer.

    Shapes: ``student_logits`` ``[B, T_s, V_s]``, ``teacher_logits`` ``[B, T_t, V_t]``,
    masks ``[B, T_s]`` / ``[B, T_t]`` (response positions); ``V_s`` and ``T_s`` may differ
    from ``V_t`` and ``T_t``. For sample :math:`b` let :math:`n_b` be the smaller count of
    masked positions, :math:`q_k, p_k` the student/teacher distributions (softmax at
    temperature :math:`\tau`) at the :math:`k`-th counted positions, and :math:`\mathrm{sort}`
    the descending sort with zero padding to :math:`\max(V_s, V_t)`:

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{b \in \mathcal{B}} \frac{1}{n_b}
            \sum_{k=1}^{n_b} \big\| \mathrm{sort}(q_k) - \mathrm{sort}(p_k) \big\|_1,
        \qquad \mathcal{B} = \{b : n_b > 0\}.

    Samples without aligned positions are skipped; if none has any the loss is 0 with a zero
    gradient. The teacher is a constant target (detached); masks are bool or 0/1.
    """
    if student_logits.dim() != 3 or teacher_logits.dim() != 3:
        raise ValueError("student_logits and teacher_logits must be [B, T, V]")
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(
            f"batch sizes differ: {student_logits.shape[0]} vs {teacher_logits.shape[0]}"
        )
    if student_mask.shape != student_logits.shape[:2]:
        raise ValueError(f"student_mask must be {tuple(student_logits.shape[:2])}")
    if teacher_mask.shape != teacher_logits.shape[:2]:
        raise ValueError(f"teacher_mask must be {tuple(teacher_logits.shape[:2])}")
    check_temperature(temperature)
    s = upcast(student_logits)
    t = upcast(teacher_logits).detach().to(s.dtype)
    width = max(s.shape[-1], t.shape[-1])

    per_sample = []
    for b in range(s.shape[0]):
        s_rows, t_rows = s[b][student_mask[b].bool()], t[b][teacher_mask[b].bool()]
        n = min(len(s_rows), len(t_rows))
        if n == 0:
            continue
        q = (s_rows[:n] / temperature).softmax(-1).sort(-1, descending=True).values
        p = (t_rows[:n] / temperature).softmax(-1).sort(-1, descending=True).values
        q = F.pad(q, (0, width - q.shape[-1]))
        p = F.pad(p, (0, width - p.shape[-1]))
        per_sample.append((q - p).abs().sum(-1).mean())
    if not per_sample:
        return s.flatten()[:0].sum()  # 0, connected to the graph, zero gradient
    return torch.stack(per_sample).mean()
