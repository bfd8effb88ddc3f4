r"""Supervised fine-tuning on teacher-written targets (sequence-level / black-box distillation).

SeqKD (Kim & Rush, 2016) and black-box distillation of LLMs train the student with plain
cross-entropy on text the teacher generated; Distilling Step-by-Step (Hsieh et al., 2023) adds
the teacher's rationale as a second target. Only the teacher's *text* is needed, never its
logits.

Alignment convention: targets are **pre-shifted**. ``student_logits[..., t, :]`` is the
distribution that must predict ``target_ids[..., t]``; for a causal LM the caller passes
``logits[:, :-1]`` and ``input_ids[:, 1:]`` (with prompt tokens set to ``ignore_index``).
"""

from __future__ import annotations

from torch import Tensor

from reference_impls.tokens import reduce_tokens, upcast


def sft_loss(student_logits: Tensor, target_ids: Tensor, *, ignore_index: int = -100) -> Tensor:
    r"""Token-mean cross-entropy of the student on teacher-written target tokens.

    .. math::
        \mathcal{L}_{\mathrm{SFT}} = -\frac{1}{\max(|\mathcal{T}|, 1)}
            \sum_{t \in \mathcal{T}} \log \mathrm{softmax}(z_t)_{y_t},
        \qquad \mathcal{T} = \{t : y_t \neq \texttt{ignore\_index}\}

    ``student_logits`` is ``[..., V]``, ``target_ids`` is ``[...]`` (pre-shifted, see module
    docstring). Returns ``0`` with a zero gradient when every target is ignored. Half-precision
    logits are upcast to float32 and the result is float32.
    """
    if student_logits.shape[:-1] != target_ids.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} must be target_ids "
            f"{tuple(target_ids.shape)} plus a trailing vocabulary dimension"
        )
    logits = upcast(student_logits)
    counted = target_ids != ignore_index
    vocab = logits.shape[-1]
    if bool(((target_ids[counted] < 0) | (target_ids[counted] >= vocab)).any()):
        raise ValueError(f"target ids must lie in [0, {vocab}) or equal ignore_index")
    safe_ids = target_ids.masked_fill(~counted, 0).long()
    nll = -logits.log_softmax(-1).gather(-1, safe_ids.unsqueeze(-1)).squeeze(-1)
    return reduce_tokens(nll, counted)


def rationale_sft_loss(
    label_logits: Tensor,
    label_ids: Tensor,
    rationale_logits: Tensor,
    rationale_ids: Tensor,
    *,
    rationale_weight: float = 1.0,
    ignore_index: int = -100,
) -> Tensor:
    r"""Distilling Step-by-Step multi-task loss: label prediction plus rationale generation.

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{label}} + \lambda\, \mathcal{L}_{\mathrm{rationale}}

    where each term is :func:`sft_loss` (token-mean cross-entropy) on its own task-prefixed
    forward pass (``[label]`` and ``[rationale]`` inputs in Hsieh et al., 2023) and
    :math:`\lambda` is ``rationale_weight``. The two token means are taken separately, so a
    long rationale does not drown out a short label.
    """
    label_term = sft_loss(label_logits, label_ids, ignore_index=ignore_index)
    rationale_term = sft_loss(rationale_logits, rationale_ids, ignore_index=ignore_index)
    return label_term + rationale_weight * rationale_term
