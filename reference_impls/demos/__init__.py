r"""Tiny end-to-end demos: every loss of :data:`reference_impls.REGISTRY` trains a student.

``python -m reference_impls.demos <loss>`` (or :func:`run_demo`) builds a small random
*teacher* causal LM, samples a synthetic corpus from it, and trains a smaller *student* with
the loss for 100-300 steps, in a few seconds on a CPU; ``--device cuda`` runs it on a GPU. It
prints the loss and the held-out KL(teacher || student), measured the same way for every loss.

Setting (one seed fixes everything): vocabulary :math:`V = 32` (id 0 doubles as BOS),
sequences ``[BOS, prompt (3 tokens), response (9 tokens)]``; the teacher has 2 transformer
blocks of width 48 and an LM head scaled up so that its next-token distributions are peaked;
the student has 1 block of width 32. Losses act on the response tokens only (the mask).

The modules: :mod:`~reference_impls.demos.models` (the tiny LMs),
:mod:`~reference_impls.demos.world` (corpus, mask, the Task record),
:mod:`~reference_impls.demos.tasks` (one builder per loss kind, in ``logit_tasks`` and
``sequence_tasks``), :mod:`~reference_impls.demos.loop` (the optimisation loop, also used by
the zoo), :mod:`~reference_impls.demos.ddp` (``torchrun``), :mod:`~reference_impls.demos.run`
(one demo) and :mod:`~reference_impls.demos.cli`. Tasks that sample from the student during a
step (on-policy, policy gradient) draw on each rank from a generator re-seeded per rank, so
under DDP they train correctly but do not reproduce the single-process samples.
This package depends on torch alone.
"""

from reference_impls.demos.cli import main
from reference_impls.demos.ddp import DistContext, dist_context, distributed, shard_indices
from reference_impls.demos.loop import Adam, LoopStats, train_loop, train_step
from reference_impls.demos.models import DemoConfig, build_student, build_teacher
from reference_impls.demos.run import DemoResult, divergence, resolve_device, run_demo
from reference_impls.demos.tasks import BUILDERS, build_task, demo_note
from reference_impls.demos.world import StepParams, Task

__all__ = [
    "BUILDERS",
    "Adam",
    "DemoConfig",
    "DemoResult",
    "DistContext",
    "LoopStats",
    "StepParams",
    "Task",
    "build_student",
    "build_task",
    "build_teacher",
    "demo_note",
    "dist_context",
    "distributed",
    "divergence",
    "main",
    "resolve_device",
    "run_demo",
    "shard_indices",
    "train_loop",
    "train_step",
]
