"""Demo task of offline top-k distillation, plugged into :mod:`reference_impls.demo`.

The teacher runs once: :func:`reference_impls.teacher_cache.write_teacher_cache` stores its
top-k next-token log-probabilities for the training sequences, :class:`TeacherCache` reads them
back, and the student trains from the cache alone (the teacher is only used to draw the corpus
and to measure the held-out divergence, as in every demo). :mod:`reference_impls.demo` imports
this module lazily, so it imports ``demo`` only inside :func:`build_topk_task`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from reference_impls.teacher_cache import TeacherCache, write_teacher_cache
from reference_impls.topk import topk_forward_kl, topk_generalized_jsd, topk_reverse_kl

if TYPE_CHECKING:
    from reference_impls.demo import DemoConfig, Task

#: The losses this module builds demos for, with the top-k size the demo caches.
TOPK_LOSSES: tuple[str, ...] = ("topk_forward_kl", "topk_reverse_kl", "topk_generalized_jsd")
DEMO_K = 8

TOPK_DEMO_NOTES: dict[str, str] = {
    name: (
        f"teacher top-{DEMO_K} log-probs (of V = 32) cached once with write_teacher_cache "
        "(float32, T_store = 1) and read back with TeacherCache; tail = bucket; the teacher is "
        "not run during training"
    )
    for name in TOPK_LOSSES
}


def build_topk_task(name: str, cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    """Cache the teacher's top-k on the training inputs, then train the student from the cache."""
    from reference_impls import demo  # lazy: demo imports this module

    loss_fns = {
        "topk_forward_kl": topk_forward_kl,
        "topk_reverse_kl": topk_reverse_kl,
        "topk_generalized_jsd": topk_generalized_jsd,
    }
    if name not in loss_fns:
        raise ValueError(f"no top-k demo for {name!r}; choose one of {TOPK_LOSSES}")
    fn = loss_fns[name]
    teacher, w = demo._single_teacher_world(cfg, device, gen)
    student = demo.build_student(cfg, device)

    def teacher_logits(ids: Tensor) -> Tensor:
        out: Tensor = teacher(ids).logits
        return out

    inputs = w.train[:, :-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_teacher_cache(
            Path(tmp) / "teacher_topk.safetensors",
            teacher_logits,
            inputs.cpu(),
            k=DEMO_K,
            chunk_size=128,
            batch_size=64,
            teacher_description="reference_impls.demo random teacher",
            device=device,
            progress=False,
        )
        with TeacherCache.open(path) as cache:
            ids, logprobs, _ = cache.get_batch(range(len(cache)))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs, batch_ids, batch_logprobs = batch
        x = seqs[:, :-1]
        loss = fn(student(x).logits, batch_ids, batch_logprobs, w.mask(x))
        return loss, loss

    return demo._task(name, w, student, step, (w.train, ids.to(device), logprobs.to(device)))
