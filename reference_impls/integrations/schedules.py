"""A loss's registry schedule (TAID's adaptive ``t``) followed by the DistillationTrainer.

The demos and the zoo advance a :class:`~reference_impls.registry.LossSpec`'s ``schedule``
after every optimiser step with that step's loss; :class:`ScheduledParams` does the same as a
``transformers`` callback, with the KD term averaged over the step's micro-batches and over
the processes, so every rank computes the same parameters.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from reference_impls.registry import Schedule, ScheduleFactory

if TYPE_CHECKING:
    from reference_impls.integrations.transformers import DistillationTrainer


class ScheduledParams(TrainerCallback):
    """Set the trainer's loss parameters from the schedule before each optimiser step."""

    def __init__(self, trainer: DistillationTrainer, factory: ScheduleFactory) -> None:
        self.trainer, self.factory = trainer, factory
        self.fixed = dict(trainer.kd_objective.params)
        self.schedule: Schedule | None = None
        self.losses: list[float] = []

    def record(self, kd: float) -> None:
        """The KD term of one training micro-batch of the current step."""
        self.losses.append(kd)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.schedule = self.factory(state.max_steps)  # a fresh schedule for this run's length
        self._apply(self.schedule(0, None))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.schedule is None or not self.losses:
            return
        local = torch.tensor(sum(self.losses) / len(self.losses), device=args.device)
        self.losses.clear()
        mean = float(self.trainer.accelerator.reduce(local, reduction="mean"))
        self._apply(self.schedule(state.global_step, mean))

    def _apply(self, scheduled: Any) -> None:
        params = {**self.fixed, **dict(scheduled)}
        self.trainer.kd_objective = dataclasses.replace(self.trainer.kd_objective, params=params)
