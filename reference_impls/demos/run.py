r"""Run one demo: build the task of a registry loss, train it, log loss and divergence.

The divergence is the same for every loss,

.. math::
    D = \frac{1}{|\mathcal{R}|}\sum_{t\in\mathcal{R}}
        \mathrm{KL}\big(p(\cdot \mid y_{<t}) \,\|\, q_\theta(\cdot \mid y_{<t})\big)

over the response positions :math:`\mathcal{R}` of held-out teacher sequences, so that
preference, ranking and reward losses also show how close they bring the student to the
teacher (or, for a reward model, that they do not move it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reference_impls.demos.ddp import dist_context, distributed
from reference_impls.demos.loop import train_loop
from reference_impls.demos.models import DemoConfig
from reference_impls.demos.tasks import build_task, demo_note, resolve
from reference_impls.demos.world import Task, response_mask


@torch.no_grad()
def divergence(task: Task, cfg: DemoConfig) -> float:
    r"""Mean forward KL(teacher || student) over the response positions of held-out sequences."""
    inputs = task.eval_seqs[:, :-1]
    log_p, log_q = task.teacher_logprobs(inputs), task.student_logprobs(inputs)
    p = log_p.exp()
    per_token = torch.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)
    return float(per_token[response_mask(inputs, cfg)].mean())


@dataclass
class DemoResult:
    """Outcome of a demo run, one entry per logging point.

    ``losses[i]`` is the mean logged loss over the steps since the previous logging point
    (the first point is the untrained student's first batch); ``divergences[i]`` the
    held-out KL(teacher || student) after ``steps[i]`` optimiser steps. ``loss_label`` names
    the logged quantity (``loss``, or the objective for policy-gradient surrogates, see
    :func:`~reference_impls.demos.tasks.demo_note`); ``extras`` holds task-specific metrics
    (reward-model pair accuracy).
    ``world_size`` is the number of DDP ranks that trained (1 without ``torchrun``).
    """

    name: str
    steps: list[int]
    losses: list[float]
    divergences: list[float]
    device: str
    seconds: float
    loss_label: str = "loss"
    extras: dict[str, list[float]] = field(default_factory=dict)
    world_size: int = 1


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda`` without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "device 'cuda' requested but torch.cuda.is_available() is False "
                "(no CUDA GPU or a CPU-only torch build); use --device cpu or auto"
            )
        return torch.device("cuda")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def _row(step: int, loss: float, kl: float, extras: dict[str, float]) -> str:
    tail = "".join(f" {v:>10.4f}" for v in extras.values())
    return f"{step:>6d} {loss:>12.4f} {kl:>22.4f}{tail}"


def run_demo(
    name: str,
    *,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    log_every: int | None = None,
    quiet: bool = False,
    config: DemoConfig | None = None,
    save: str | Path | None = None,
    loss: str | None = None,
) -> DemoResult:
    """Train a tiny student with the registry loss ``name`` and record loss and divergence.

    ``name`` may also be a scenario (:data:`~reference_impls.demos.tasks.SCENARIOS`) training
    the token-level ``loss``. Under ``torchrun`` the run is data-parallel (see the module
    docstring); ``save`` writes the trained module's ``state_dict`` there (rank 0 only) with
    ``torch.save``.
    """
    cfg = config or dataclasses.replace(DemoConfig(), **resolve(name, loss)[0].demo)
    dev = resolve_device(device)
    n_steps = steps if steps is not None else cfg.steps
    if n_steps < 1:
        raise ValueError(f"steps must be >= 1, got {n_steps}")
    every = log_every if log_every is not None else max(1, n_steps // 10)
    if every < 1:
        raise ValueError(f"log_every must be >= 1, got {every}")
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation cost
    try:
        with distributed(dev) as rank_dev:
            return _train(name, loss, cfg, rank_dev, seed, n_steps, every, quiet, save)
    finally:
        torch.set_num_threads(threads)


def _train(
    name: str,
    loss: str | None,
    cfg: DemoConfig,
    dev: torch.device,
    seed: int,
    n_steps: int,
    every: int,
    quiet: bool,
    save: str | Path | None,
) -> DemoResult:
    """The body of :func:`run_demo`: build the task, train, log loss and divergence."""
    start = time.perf_counter()
    ctx = dist_context()
    task = build_task(name, dataclasses.replace(cfg, steps=n_steps), dev, seed, loss=loss)
    result = DemoResult(name, [], [], [], str(dev), 0.0, task.loss_label, world_size=ctx.world_size)
    show = not quiet and ctx.is_main  # only rank 0 prints
    if show:
        ranks = f" ({ctx.world_size} ranks, DDP)" if ctx.world_size > 1 else ""
        print(f"{name} on {dev}{ranks}: {demo_note(name, loss)}")
        extra_names = list(task.extra_metrics()) if task.extra_metrics else []
        head = "".join(f" {n:>10}" for n in extra_names)
        print(f"{'step':>6} {task.loss_label:>12} {'KL(teacher||student)':>22}{head}")

    def log(step: int, loss: float) -> None:
        extras = task.extra_metrics() if task.extra_metrics else {}
        result.steps.append(step)
        result.losses.append(loss)
        result.divergences.append(divergence(task, cfg))
        for key, value in extras.items():
            result.extras.setdefault(key, []).append(value)
        if show:
            print(_row(step, loss, result.divergences[-1], extras), flush=True)

    train_loop(
        task,
        steps=n_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        log_every=every,
        on_log=log,
    )
    if save is not None and ctx.is_main:
        assert task.module is not None
        torch.save(task.module.state_dict(), Path(save))
    result.seconds = time.perf_counter() - start
    return result
