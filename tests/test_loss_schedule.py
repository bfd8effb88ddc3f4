"""A spec's ``schedule`` drives its parameters in the demos and the zoo, step by step.

A recording schedule checks what the loops feed it (step index, the previous step's logged
loss, the run's number of steps) and that the loss then receives the scheduled parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor

from reference_impls import SPECS, Kind, LossSpec
from reference_impls.demos import BUILDERS, DemoConfig, StepParams, run_demo, train_loop
from reference_impls.kl import forward_kl
from reference_impls.zoo import ZooConfig, build_language, build_zoo_task

CPU = torch.device("cpu")


class Recorder:
    """A schedule factory whose schedules log their calls and return ``scale = 1 + step``."""

    def __init__(self) -> None:
        self.total_steps: list[int] = []
        self.calls: list[tuple[int, float | None]] = []

    def __call__(self, total_steps: int) -> Any:
        self.total_steps.append(total_steps)

        def schedule(step: int, last_loss: float | None) -> dict[str, float]:
            self.calls.append((step, last_loss))
            return {"scale": 1.0 + step}

        return schedule


def test_step_params_without_schedule_never_change() -> None:
    params = StepParams({"beta": 0.5})
    assert params.on_step is None and params.current == {"beta": 0.5}
    params.after_step(0, 1.0)
    assert params.current == {"beta": 0.5}


def test_demo_builder_feeds_each_steps_logged_loss_to_the_schedule() -> None:
    seen: list[tuple[float, float]] = []  # (scale, value) of every training call

    def scaled_forward_kl(
        student_logits: Tensor,
        teacher_logits: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: float = 1.0,
        scale: float,
    ) -> Tensor:
        value = scale * forward_kl(student_logits, teacher_logits, mask, temperature=temperature)
        if torch.is_grad_enabled():
            seen.append((scale, float(value.detach())))
        return value

    recorder = Recorder()
    spec = LossSpec(scaled_forward_kl, Kind.TOKEN_LEVEL, params={"scale": 0.0}, schedule=recorder)
    cfg = DemoConfig(n_train=32, n_eval=8, steps=4)
    torch.manual_seed(0)
    task = BUILDERS[spec.kind].build(spec, cfg, CPU, torch.Generator().manual_seed(0))
    train_loop(task, steps=4, batch_size=8, lr=1e-2, seed=0)
    assert recorder.total_steps == [4]
    assert [scale for scale, _ in seen] == [1.0, 2.0, 3.0, 4.0]
    assert recorder.calls == [(0, None)] + [(i + 1, seen[i][1]) for i in range(4)]


def test_run_demo_and_the_zoo_step_the_taid_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    spec = SPECS["taid_loss"]
    monkeypatch.setitem(
        SPECS, "taid_loss", dataclasses.replace(spec, schedule=lambda n: _as_t(recorder(n)))
    )
    run_demo("taid_loss", steps=3, device="cpu", quiet=True)
    assert recorder.total_steps == [3]  # the run's steps, not the config's default
    assert [step for step, _ in recorder.calls] == [0, 1, 2, 3]
    recorder.calls.clear()
    cfg = ZooConfig(steps=5, n_pool=256, n_curve_points=1)
    task = build_zoo_task("taid_loss", cfg, build_language(cfg, CPU), CPU, seed=0)
    losses: list[float] = []
    train_loop(task, steps=5, batch_size=16, lr=1e-2, seed=0, on_log=lambda s, v: losses.append(v))
    assert recorder.total_steps[-1] == 5
    assert [step for step, _ in recorder.calls] == [0, 1, 2, 3, 4, 5]
    assert all(loss is not None and loss > 0 for _, loss in recorder.calls[1:])


def _as_t(schedule: Any) -> Any:
    """Map the recorder's ``scale = 1 + step`` to a valid TAID ``t``."""
    return lambda step, loss: {"t": min(1.0, 0.4 + 0.1 * (schedule(step, loss)["scale"] - 1))}


def test_registered_taid_schedule_raises_t_during_a_zoo_run() -> None:
    cfg = ZooConfig(steps=20, n_pool=256, n_curve_points=1)
    task = build_zoo_task("taid_loss", cfg, build_language(cfg, CPU), CPU, seed=0)
    assert task.on_step is not None
    params = task.on_step.__self__  # type: ignore[attr-defined]
    assert isinstance(params, StepParams) and params.current["t"] == 0.4
    train_loop(task, steps=20, batch_size=16, lr=1e-2, seed=0)
    # the linear floor alone reaches 0.4 + 0.6 * 19 / 20 after the last update
    assert params.current["t"] >= 0.4 + 0.6 * 19 / 20 - 1e-12
