"""Reference implementations of the distillation losses of KD Atlas's method nodes.

Each loss family lives in one small file that reads like a textbook page (formula in the
docstring, a few lines of torch); :mod:`reference_impls.registry` lists every loss once.
Every registered loss is an attribute of this package (``reference_impls.forward_kl``), looked
up in the registry, so adding a loss never edits this file. Demos:
``python -m reference_impls.demos <loss>``; the loss zoo: ``python -m reference_impls.zoo``.

This package depends on torch alone; it never imports ``kbtool``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from reference_impls.bitdistiller import teacher_confidence
from reference_impls.difference_sampling import difference_scores, select_by_difference
from reference_impls.fused import FusedLinearDistillLoss, fused_linear_distill
from reference_impls.kl import TAIDSchedule
from reference_impls.on_policy import KLEstimates, kl_estimators, speculative_kd_sample
from reference_impls.registry import (
    LOSSES,
    REGISTRY,
    SPECS,
    TOKEN_LEVEL_LOSSES,
    Kind,
    LossSpec,
    spec_of,
)
from reference_impls.skew_kl import distillm2_b_schedule
from reference_impls.tokens import TokenLevelLoss, mask_from_labels
from reference_impls.topk import TeacherSample, importance_weights, teacher_sample, teacher_topk


def __getattr__(name: str) -> Callable[..., Tensor]:
    """``reference_impls.<loss>``: the registered loss function of that name (PEP 562)."""
    if name in REGISTRY:
        return REGISTRY[name]
    raise AttributeError(f"module 'reference_impls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *REGISTRY])


__all__ = [
    "LOSSES",
    "REGISTRY",
    "SPECS",
    "TOKEN_LEVEL_LOSSES",
    "FusedLinearDistillLoss",
    "KLEstimates",
    "Kind",
    "LossSpec",
    "TeacherSample",
    "TokenLevelLoss",
    "difference_scores",
    "TAIDSchedule",
    "distillm2_b_schedule",
    "fused_linear_distill",
    "importance_weights",
    "kl_estimators",
    "mask_from_labels",
    "select_by_difference",
    "spec_of",
    "speculative_kd_sample",
    "teacher_confidence",
    "teacher_sample",
    "teacher_topk",
    *REGISTRY,
]
