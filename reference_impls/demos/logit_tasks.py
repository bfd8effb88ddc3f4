r"""Demo builders of the kinds that read the teacher's internals: logits, hidden states, attention.

One builder per :class:`~reference_impls.registry.Kind`; each takes the loss's
:class:`~reference_impls.registry.LossSpec` and calls its function with the spec's
``params``, so no builder knows a loss by name. The teacher runs inside each step (top-k:
once, into a cache), the student trains on teacher-sampled sequences.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reference_impls.demos.models import (
    DemoConfig,
    LMOutput,
    ProjectedStudent,
    TinyLM,
    build_backbone,
    build_student,
    build_teacher,
)
from reference_impls.demos.world import (
    StepParams,
    Task,
    World,
    make_task,
    response_targets,
    single_teacher_world,
    teacher_world_student,
)
from reference_impls.registry import LossSpec
from reference_impls.sft import sft_loss
from reference_impls.teacher_cache import TeacherCache, write_teacher_cache

#: Top-k size the sparse demos cache (of V = 32).
DEMO_K = 8
#: Draws per token of the sampled-cache demo.
DEMO_SAMPLES = 16


def _logits_task(
    spec: LossSpec,
    w: World,
    student: TinyLM,
    teacher_logits: Callable[[Tensor], object],
    params: dict[str, Any],
) -> Task:
    """A task whose step is ``fn(student logits, teacher logits, response mask, **params)``.

    ``params`` are overridden at every step by the spec's ``schedule``, if any, built for
    ``w.cfg.steps`` steps.
    """
    scheduled = StepParams(params, spec.schedule(w.cfg.steps) if spec.schedule else None)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        inputs = batch[0][:, :-1]
        with torch.no_grad():
            targets = teacher_logits(inputs)
        loss = spec.function(student(inputs).logits, targets, w.mask(inputs), **scheduled.current)
        return loss, loss

    return make_task(spec.name, w, student, step, on_step=scheduled.on_step)


def token_level_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Student vs teacher logits; ``fit_params`` are measured once on the training set."""
    teacher, w, student = teacher_world_student(cfg, device, gen)
    params = dict(spec.params)
    if spec.fit_params is not None:
        params.update(
            spec.fit_params(teacher(w.train[:, :-1]).logits, response_targets(w.train, cfg))
        )
    return _logits_task(spec, w, student, lambda x: teacher(x).logits, params)


def multi_teacher_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Three teachers: a random one and two perturbed copies; the corpus is their mixture's."""
    base = build_teacher(cfg, cfg.vocab_size, device)
    teachers = [base]
    for _ in range(2):
        t = copy.deepcopy(base)
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.5 * p.std() * torch.randn(p.shape, device=device, generator=gen))
        teachers.append(t)

    def mixture(ids: Tensor) -> Tensor:
        lps = torch.stack([t(ids).logits.log_softmax(-1) for t in teachers])
        return lps.logsumexp(0) - math.log(len(teachers))

    w = World(cfg, device, gen, mixture)
    student = build_student(cfg, device)

    def teacher_logits(ids: Tensor) -> list[Tensor]:
        return [t(ids).logits for t in teachers]

    return _logits_task(spec, w, student, teacher_logits, dict(spec.params))


def cross_tokenizer_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """A teacher over a larger vocabulary: an injective relabelling of the student's symbols."""
    teacher = build_teacher(cfg, cfg.uld_teacher_vocab, device)
    perm = torch.randperm(cfg.uld_teacher_vocab, device=device, generator=gen)
    to_teacher_ids = perm[: cfg.vocab_size]  # symbol s is teacher token to_teacher_ids[s]
    unused = torch.ones(cfg.uld_teacher_vocab, dtype=torch.bool, device=device)
    unused[to_teacher_ids] = False

    def teacher_logits(symbols: Tensor) -> Tensor:  # [B, T, 48] over the teacher vocabulary
        out: LMOutput = teacher(to_teacher_ids[symbols])
        return out.logits.masked_fill(unused, float("-inf"))

    def teacher_logprobs(symbols: Tensor) -> Tensor:  # the same distribution over symbols
        return teacher_logits(symbols)[..., to_teacher_ids].log_softmax(-1)

    w = World(cfg, device, gen, teacher_logprobs)
    student = build_student(cfg, device)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_logits = teacher_logits(inputs)
        s_logits = student(inputs).logits
        mask = w.mask(inputs)
        loss = spec.function(s_logits, t_logits, mask, mask, **spec.params)
        return _with_sft(spec, loss, s_logits, seqs, cfg), loss

    return make_task(spec.name, w, student, step)


def _with_sft(
    spec: LossSpec, loss: Tensor, logits: Tensor, seqs: Tensor, cfg: DemoConfig
) -> Tensor:
    """The objective: ``loss``, plus cross-entropy on the teacher's sample if the spec asks."""
    if not spec.with_sft:
        return loss
    return loss + sft_loss(logits, response_targets(seqs, cfg))


def hidden_state_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Projected student hidden states vs the teacher's, read out through the teacher's head."""
    teacher, w = single_teacher_world(cfg, device, gen)
    assert teacher.head is not None
    student = ProjectedStudent(build_backbone(cfg, device), cfg.d_teacher, teacher.head)
    student.to(device)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        inputs = batch[0][:, :-1]
        with torch.no_grad():
            t_hidden = teacher(inputs).hidden
        out = student(inputs)
        loss = spec.function(
            out.hidden, t_hidden, w.mask(inputs), projection=student.projection, **spec.params
        )
        return _with_sft(spec, loss, out.logits, batch[0], cfg), loss

    return make_task(spec.name, w, student, step)


def attention_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Last-layer attention maps of student and teacher (same number of heads)."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_attn = teacher(inputs).attentions[-1]
        out = student(inputs)
        loss = spec.function(out.attentions[-1], t_attn, w.mask(inputs), **spec.params)
        return _with_sft(spec, loss, out.logits, seqs, cfg), loss

    return make_task(spec.name, w, student, step)


def _cached_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator, **cache: Any
) -> Task:
    """Cache the teacher's sparse targets on the training inputs; train the student from them."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def teacher_logits(ids: Tensor) -> Tensor:
        out: Tensor = teacher(ids).logits
        return out

    with tempfile.TemporaryDirectory() as tmp:
        path = write_teacher_cache(
            Path(tmp) / "teacher.safetensors",
            teacher_logits,
            w.train[:, :-1].cpu(),
            chunk_size=128,
            batch_size=64,
            teacher_description="reference_impls.demos random teacher",
            device=device,
            progress=False,
            **cache,
        )
        with TeacherCache.open(path) as stored:
            ids, values, _ = stored.get_batch(range(len(stored)))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs, batch_ids, batch_values = batch
        x = seqs[:, :-1]
        loss = spec.function(student(x).logits, batch_ids, batch_values, w.mask(x), **spec.params)
        return loss, loss

    return make_task(spec.name, w, student, step, (w.train, ids.to(device), values.to(device)))


def sparse_topk_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Cache the teacher's top-k on the training inputs, then train the student from the cache."""
    return _cached_task(spec, cfg, device, gen, k=DEMO_K)


def sparse_sampled_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Cache sampled teacher ids and counts on the training inputs; train from their weights."""
    return _cached_task(spec, cfg, device, gen, mode="sampled", samples=DEMO_SAMPLES, seed=0)
