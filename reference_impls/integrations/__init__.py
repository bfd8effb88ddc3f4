"""Our losses where practitioners train: a Hugging Face ``Trainer`` for distillation.

``from reference_impls.integrations.transformers import DistillationTrainer`` (needs the ``hf``
extra: ``pip install 'kd-atlas[hf]'``). Importing this package does not import transformers:
the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DistillationTrainer": "reference_impls.integrations.transformers",
    "DistillationCollator": "reference_impls.integrations.batches",
    "run_tiny_hf_demo": "reference_impls.integrations.tiny",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import ``DistillationTrainer`` and friends lazily (transformers only when asked for)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
