"""Reference implementations of the distillation losses of KD Atlas's method nodes.

Each loss family lives in one small file that reads like a textbook page (formula in the
docstring, a few lines of torch). Import losses from here: ``reference_impls.forward_kl`` etc.
Modules named after a loss (``reference_impls/forward_kl.py``) are demo runners for
``python -m reference_impls.forward_kl`` only; they refuse to be imported so that they never
shadow the function of the same name.

This package depends on torch alone; it never imports ``kbtool``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_impls._common import mask_from_labels
from reference_impls.akl import adaptive_kl
from reference_impls.bitdistiller import confidence_aware_kl, teacher_confidence
from reference_impls.fused import FusedLinearDistillLoss, fused_linear_distill
from reference_impls.jsd import generalized_jsd, js_divergence
from reference_impls.kl import forward_kl, reverse_kl, soft_cross_entropy
from reference_impls.minillm import minillm_loss
from reference_impls.multi_teacher import multi_teacher_kl
from reference_impls.policy_gradient import kl_regularized_pg_loss
from reference_impls.preference import bradley_terry_loss, dpo_loss
from reference_impls.ranking import pro_loss, rrhf_loss
from reference_impls.sft import rationale_sft_loss, sft_loss
from reference_impls.similarity import (
    attention_kl,
    feature_cross_entropy,
    hidden_cosine,
    hidden_l1,
    hidden_mse,
    mmd,
)
from reference_impls.skew_kl import skew_forward_kl, skew_reverse_kl
from reference_impls.topk import (
    teacher_topk,
    topk_forward_kl,
    topk_generalized_jsd,
    topk_reverse_kl,
)
from reference_impls.tvd import total_variation
from reference_impls.uld import uld_loss

#: Losses that follow the token-level contract
#: ``fn(student_logits, teacher_logits, mask=None, *, temperature=1.0, **params)``.
TOKEN_LEVEL_LOSSES: tuple[str, ...] = (
    "forward_kl",
    "reverse_kl",
    "soft_cross_entropy",
    "js_divergence",
    "generalized_jsd",
    "skew_forward_kl",
    "skew_reverse_kl",
    "total_variation",
    "adaptive_kl",
    "confidence_aware_kl",
)

#: Every loss of the package by name; method nodes point here through their ``loss`` field.
REGISTRY: dict[str, Callable[..., Any]] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "soft_cross_entropy": soft_cross_entropy,
    "js_divergence": js_divergence,
    "generalized_jsd": generalized_jsd,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "total_variation": total_variation,
    "adaptive_kl": adaptive_kl,
    "confidence_aware_kl": confidence_aware_kl,
    "multi_teacher_kl": multi_teacher_kl,
    "sft_loss": sft_loss,
    "rationale_sft_loss": rationale_sft_loss,
    "dpo_loss": dpo_loss,
    "bradley_terry_loss": bradley_terry_loss,
    "kl_regularized_pg_loss": kl_regularized_pg_loss,
    "uld_loss": uld_loss,
    "minillm_loss": minillm_loss,
    "hidden_mse": hidden_mse,
    "hidden_l1": hidden_l1,
    "hidden_cosine": hidden_cosine,
    "feature_cross_entropy": feature_cross_entropy,
    "mmd": mmd,
    "attention_kl": attention_kl,
    "rrhf_loss": rrhf_loss,
    "pro_loss": pro_loss,
    # Offline distillation from stored teacher top-k log-probabilities (sparse teacher side).
    "topk_forward_kl": topk_forward_kl,
    "topk_reverse_kl": topk_reverse_kl,
    "topk_generalized_jsd": topk_generalized_jsd,
}

__all__ = [
    "FusedLinearDistillLoss",
    "REGISTRY",
    "TOKEN_LEVEL_LOSSES",
    "adaptive_kl",
    "attention_kl",
    "bradley_terry_loss",
    "confidence_aware_kl",
    "dpo_loss",
    "feature_cross_entropy",
    "forward_kl",
    "fused_linear_distill",
    "generalized_jsd",
    "hidden_cosine",
    "hidden_l1",
    "hidden_mse",
    "js_divergence",
    "kl_regularized_pg_loss",
    "mask_from_labels",
    "minillm_loss",
    "mmd",
    "multi_teacher_kl",
    "pro_loss",
    "rationale_sft_loss",
    "reverse_kl",
    "rrhf_loss",
    "sft_loss",
    "skew_forward_kl",
    "skew_reverse_kl",
    "soft_cross_entropy",
    "teacher_confidence",
    "teacher_topk",
    "topk_forward_kl",
    "topk_generalized_jsd",
    "topk_reverse_kl",
    "total_variation",
    "uld_loss",
]
