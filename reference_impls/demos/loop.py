r"""The optimisation loop of the demos and the zoo: Adam written out, one step, the loop.

:func:`train_loop` draws global batches from a task's pool, runs the step (through DDP in a
process group, see :mod:`reference_impls.demos.ddp`), and reports the logged loss at regular
points. It measures step time and, on request, gradient norms (the zoo records both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from reference_impls.demos.ddp import ddp_task, dist_context, mean_over_ranks, shard_indices
from reference_impls.demos.world import Task


class Adam:
    r"""Adam (Kingma & Ba, 2015) written out, with bias correction:
    :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)`.

    Why not ``torch.optim.Adam``: its first use imports ``torch._dynamo``, which takes longer
    (about 1.5 s) than a whole demo run.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            m_hat, v_hat = m / (1 - b1**self.t), v / (1 - b2**self.t)
            p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def train_step(task: Task, optimizer: Adam, batch: tuple[Tensor, ...]) -> float:
    """One optimiser step on ``batch``; returns the logged value of the loss."""
    optimizer.zero_grad()
    objective, logged = task.step(batch)
    torch.autograd.backward(objective)
    optimizer.step()
    return float(logged.detach())


@dataclass
class LoopStats:
    """What :func:`train_loop` measured: optimiser steps, their wall time, gradient norms.

    ``seconds`` covers the training steps only (the ``on_log`` callbacks are excluded);
    ``grad_norms[i]`` is the global L2 norm of the (rank-averaged) gradient of step ``i + 1``,
    recorded only on request.
    """

    steps: int
    seconds: float
    grad_norms: list[float] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        """Mean wall time of one optimiser step."""
        return self.seconds / max(self.steps, 1)


def _grad_norm(params: Sequence[Tensor]) -> float:
    """Global L2 norm of the gradients of ``params`` (parameters without gradient skipped)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def train_loop(
    task: Task,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log_every: int | None = None,
    on_log: Callable[[int, float], None] | None = None,
    record_grad_norms: bool = False,
) -> LoopStats:
    """Train ``task`` with :class:`Adam` for ``steps`` steps on random batches of its pool.

    Each step draws a *global* batch of ``batch_size`` pool rows with replacement from a CPU
    generator seeded with ``seed + 1`` (identical on every device and rank). In a process
    group of ``K`` ranks the step runs through DDP and rank ``r`` computes on the rows
    ``shard_indices(batch_size, r, K)`` of the batch (``batch_size`` must be divisible by
    ``K``). ``on_log(step, loss)`` runs at step 0 (the untrained model's loss on the first
    batch), every ``log_every`` steps and after the last one, with the mean logged loss since
    the previous call, averaged over the ranks; it runs on every rank. ``task.on_step``, if
    set, runs after every step with the step's logged loss averaged over the ranks.
    """
    ctx = dist_context()
    if batch_size % ctx.world_size:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the world size {ctx.world_size}: "
            "every rank takes an equal share of the global batch"
        )
    every = log_every if log_every is not None else max(1, steps // 10)
    if steps < 1 or every < 1:
        raise ValueError(f"steps and log_every must be >= 1, got {steps} and {every}")
    device = task.params[0].device
    if ctx.world_size > 1:
        task = ddp_task(task, ctx, seed)
    optimizer = Adam(task.params, lr=lr)
    mine = shard_indices(batch_size, ctx.rank, ctx.world_size)
    n_pool = len(task.pool[0])
    batch_gen = torch.Generator().manual_seed(seed + 1)  # CPU: same batches on every device
    stats = LoopStats(steps, 0.0)
    window: list[float] = []  # logged losses since the previous logging point
    start, paused = time.perf_counter(), 0.0
    for step in range(steps + 1):
        pick = torch.randint(n_pool, (batch_size,), generator=batch_gen)[mine]
        batch = tuple(t[pick.to(t.device)] for t in task.pool)
        if on_log is not None and (step % every == 0 or step == steps):
            pause = time.perf_counter()
            if not window:  # step 0: the untrained model's loss on this batch
                with torch.no_grad():
                    window = [float(task.step(batch)[1])]
            on_log(step, mean_over_ranks(sum(window) / len(window), ctx, device))
            window = []
            paused += time.perf_counter() - pause
        if step < steps:
            window.append(train_step(task, optimizer, batch))
            if record_grad_norms:
                stats.grad_norms.append(_grad_norm(task.params))
            if task.on_step is not None:
                task.on_step(step, mean_over_ranks(window[-1], ctx, device))
    stats.seconds = time.perf_counter() - start - paused
    return stats
