r"""Data-parallel demos under ``torchrun``: join the process group, wrap the step in DDP.

``torchrun --nproc_per_node=K -m reference_impls.demos <loss>`` (or ``python -m
torch.distributed.run ...``) starts K processes; :func:`distributed` joins the group that
``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (gloo on CPU, nccl on CUDA,
one GPU per rank). Every rank draws the same *global* batch and computes on its strided shard
(:func:`shard_indices`); DDP averages the gradients, which is the gradient of the global token
mean because every rank counts the same number of tokens (fixed response length, ``batch_size``
divisible by K). Only rank 0 prints or saves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from reference_impls.demos.world import StepFn, Task


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without a process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that prints, saves and writes files."""
        return self.rank == 0


def dist_context() -> DistContext:
    """Rank and size of the current process group (``DistContext()`` when there is none)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return DistContext(dist.get_rank(), dist.get_world_size(), local)
    return DistContext()


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (``python -m torch.distributed.run``) started this process."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def rank_device(device: torch.device) -> torch.device:
    """Under ``torchrun`` a CUDA rank uses the GPU of its local rank; CPU ranks the CPU."""
    if device.type == "cuda" and launched_by_torchrun():
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """Join the process group ``torchrun`` describes for the block; yield this rank's device.

    Backend nccl for CUDA, gloo for CPU; the rendezvous is ``env://`` (``MASTER_ADDR``,
    ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, all set by ``torchrun``). Outside ``torchrun``,
    or when a group already exists (the zoo runs many trainings in one group), nothing is
    initialised or destroyed, so single-process runs are unchanged.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield rank_device(device)
        return
    if not dist.is_available():
        raise RuntimeError("launched by torchrun, but this torch build lacks torch.distributed")
    device = rank_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


class StepModule(nn.Module):
    """A task's whole step as a module that owns the trained parameters, for DDP to wrap.

    DDP averages the gradients of what runs inside its ``forward``; routing the entire step
    through it also covers steps that call the student more than once.
    """

    def __init__(self, trained: nn.Module, step: StepFn) -> None:
        super().__init__()
        self.trained = trained
        self.step_fn = step

    def forward(self, *batch: Tensor) -> tuple[Tensor, Tensor]:
        return self.step_fn(batch)


def ddp_task(task: Task, ctx: DistContext, seed: int) -> Task:
    """``task`` with its step run through DistributedDataParallel (gradients averaged)."""
    if task.module is None:
        raise ValueError(f"task {task.name!r} names no trained module, so DDP cannot wrap it")
    device_ids = [ctx.local_rank] if task.params[0].is_cuda else None
    ddp = DistributedDataParallel(StepModule(task.module, task.step), device_ids=device_ids)
    if task.sampler is not None:  # on-policy samples: a different stream on every rank
        task.sampler.manual_seed(seed + 7919 * (ctx.rank + 1))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = ddp(*batch)
        return out

    return dataclasses.replace(task, step=step)


def mean_over_ranks(value: float, ctx: DistContext, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in a single process)."""
    if ctx.world_size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / ctx.world_size


def shard_indices(n: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """Items ``rank, rank + world_size, ...`` of ``n``: the rank's strided shard (all for one rank).

    :func:`train_loop` applies it to each global batch, so the shards of a step partition it.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got {rank} of {world_size}")
    return torch.arange(rank, n, world_size)
