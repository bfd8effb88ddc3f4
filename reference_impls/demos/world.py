r"""The setting every demo shares: teacher corpus, response mask, the :class:`Task` record.

Sequences are ``[BOS, prompt, response]`` sampled from a teacher; losses act on the response
tokens only (:func:`response_mask`). A :class:`World` holds the config, device, random state,
teacher and corpus of one demo; :func:`make_task` turns a trained module and its step into the
:class:`Task` that :func:`reference_impls.demos.loop.train_loop` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from reference_impls.demos.models import DemoConfig, LMOutput, TinyLM, build_student, build_teacher
from reference_impls.registry import Schedule

BOS = 0
IGNORE = -100

LogProbFn = Callable[[Tensor], Tensor]  # ids [B, T] -> next-token log-probs [B, T, V]


@torch.no_grad()
def sample_continuations(
    logprob_fn: LogProbFn, prefix: Tensor, n_new: int, gen: torch.Generator
) -> Tensor:
    """Append ``n_new`` tokens sampled autoregressively from ``logprob_fn`` (no KV cache)."""
    seqs = prefix
    for _ in range(n_new):
        probs = logprob_fn(seqs)[:, -1].exp()
        nxt = torch.multinomial(probs, 1, generator=gen)
        seqs = torch.cat([seqs, nxt], dim=1)
    return seqs


def response_mask(inputs: Tensor, cfg: DemoConfig) -> Tensor:
    """Bool ``[B, T]`` over the inputs ``seqs[:, :-1]``: True where a response token is predicted.

    Position ``t`` of the inputs predicts token ``t + 1``; the response starts at token
    ``1 + prompt_len``, so the positions ``prompt_len, ...`` count.
    """
    mask = torch.zeros(inputs.shape, dtype=torch.bool, device=inputs.device)
    mask[:, cfg.prompt_len :] = True
    return mask


def response_targets(seqs: Tensor, cfg: DemoConfig) -> Tensor:
    """Pre-shifted targets ``seqs[:, 1:]`` with the prompt tokens set to ``IGNORE``."""
    targets = seqs[:, 1:].clone()
    targets[:, : cfg.prompt_len] = IGNORE
    return targets


def token_logps(logits: Tensor, seqs: Tensor) -> Tensor:
    """``[B, T]`` log-probabilities of ``seqs[:, 1:]`` under logits computed on ``seqs[:, :-1]``."""
    return logits.log_softmax(-1).gather(-1, seqs[:, 1:].unsqueeze(-1)).squeeze(-1)


def response_logps(model: Callable[[Tensor], LMOutput], seqs: Tensor, cfg: DemoConfig) -> Tensor:
    """``[B]`` summed log-probability of each response under ``model``."""
    logps = token_logps(model(seqs[:, :-1]).logits, seqs)
    return logps[:, cfg.prompt_len :].sum(-1)


StepFn = Callable[[tuple[Tensor, ...]], tuple[Tensor, Tensor]]


@dataclass
class Task:
    """Everything the loop needs for one loss.

    ``step(batch)`` returns ``(objective, logged)``: the scalar to minimise and the value to
    report (the registry loss, unless a note says otherwise). ``pool`` holds the training
    items (tensors sharing their first dimension); batches are rows of it.
    """

    name: str
    params: list[nn.Parameter]
    pool: tuple[Tensor, ...]
    step: StepFn
    student_logprobs: LogProbFn
    teacher_logprobs: LogProbFn
    eval_seqs: Tensor
    loss_label: str = "loss"
    extra_metrics: Callable[[], dict[str, float]] | None = None
    #: The trained module (owner of ``params``): DDP wraps it, ``--save`` stores its state.
    module: nn.Module | None = None
    #: Generator of samples drawn *during* steps (on-policy tasks); re-seeded per rank in DDP.
    sampler: torch.Generator | None = None
    #: Called by the loop after every optimiser step with its index and logged loss (the
    #: mean over ranks): how scheduled loss parameters (:class:`StepParams`) advance.
    on_step: Callable[[int, float], None] | None = None


class StepParams:
    """A loss's keyword parameters at the current step: fixed ones, overridden by a schedule.

    ``current`` holds the parameters of the next step; :meth:`after_step` (a task's
    ``on_step``) advances the schedule with the step's logged loss. Without a schedule the
    parameters never change.
    """

    def __init__(self, fixed: Mapping[str, Any], schedule: Schedule | None = None) -> None:
        self.fixed, self.schedule = dict(fixed), schedule
        self.current = {**self.fixed, **(schedule(0, None) if schedule is not None else {})}

    def after_step(self, step: int, loss: float) -> None:
        """Step ``step`` logged ``loss``: compute the parameters of step ``step + 1``."""
        if self.schedule is not None:
            self.current = {**self.fixed, **self.schedule(step + 1, loss)}

    @property
    def on_step(self) -> Callable[[int, float], None] | None:
        """The hook a task needs: :meth:`after_step`, or None if nothing is scheduled."""
        return self.after_step if self.schedule is not None else None


@dataclass
class World:
    """Shared setting of a demo: config, device, random state, teacher and corpus."""

    cfg: DemoConfig
    device: torch.device
    gen: torch.Generator
    teacher_logprobs: LogProbFn
    train: Tensor = field(init=False)
    held_out: Tensor = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.cfg
        n = cfg.n_train + cfg.n_eval
        bos = torch.full((n, 1), BOS, dtype=torch.long, device=self.device)
        seqs = sample_continuations(self.teacher_logprobs, bos, cfg.seq_len - 1, self.gen)
        self.train, self.held_out = seqs[: cfg.n_train], seqs[cfg.n_train :]

    def mask(self, inputs: Tensor) -> Tensor:
        """The response mask of ``inputs``."""
        return response_mask(inputs, self.cfg)

    def prompts(self, seqs: Tensor) -> Tensor:
        """``[BOS, prompt]`` of each sequence."""
        return seqs[:, : 1 + self.cfg.prompt_len]


def logprobs_of(model: Callable[[Tensor], LMOutput]) -> LogProbFn:
    """Next-token log-probabilities of an LM."""
    return lambda ids: model(ids).logits.log_softmax(-1)


def make_task(
    name: str,
    w: World,
    trained: nn.Module,
    step: StepFn,
    pool: tuple[Tensor, ...] | None = None,
    *,
    student_logprobs: LogProbFn | None = None,
    **kwargs: object,
) -> Task:
    """A Task training ``trained``; the student defaults to ``trained`` read as an LM."""
    return Task(
        name,
        list(trained.parameters()),
        pool if pool is not None else (w.train,),
        step,
        student_logprobs or logprobs_of(trained),
        w.teacher_logprobs,
        w.held_out,
        **kwargs,  # type: ignore[arg-type]
        module=trained,
        sampler=w.gen,
    )


def single_teacher_world(
    cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> tuple[TinyLM, World]:
    """A random teacher over the student vocabulary and the world of its samples."""
    teacher = build_teacher(cfg, cfg.vocab_size, device)
    return teacher, World(cfg, device, gen, logprobs_of(teacher))


def teacher_model(w: World) -> Callable[[Tensor], LMOutput]:
    """Wrap the world's teacher log-probs as a model whose logits are those log-probs."""
    return lambda ids: LMOutput(w.teacher_logprobs(ids), ids[..., :0].float(), [])


def teacher_world_student(
    cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> tuple[TinyLM, World, TinyLM]:
    """The usual setting: a random teacher, the world of its samples, a fresh student."""
    teacher, w = single_teacher_world(cfg, device, gen)
    return teacher, w, build_student(cfg, device)


@dataclass(frozen=True)
class Rollout:
    """Responses sampled from the current student, both models' logits on ``seqs[:, :-1]``
    (the teacher's without gradient) and the response mask."""

    seqs: Tensor
    student_logits: Tensor
    teacher_logits: Tensor
    mask: Tensor

    def reverse_kl(self) -> Tensor:
        """Exact per-token KL(q || p) over the vocabulary, mean over the response (logged)."""
        log_q = self.student_logits.detach().log_softmax(-1)
        log_p = self.teacher_logits.log_softmax(-1)
        return (log_q.exp() * (log_q - log_p)).sum(-1)[self.mask].mean()


def student_rollout(
    student: Callable[[Tensor], LMOutput],
    teacher: Callable[[Tensor], LMOutput],
    w: World,
    prompts: Tensor,
    response_len: int,
) -> Rollout:
    """Sample responses to ``prompts`` from the student and score them with both models."""
    seqs = sample_continuations(logprobs_of(student), prompts, response_len, w.gen)
    inputs = seqs[:, :-1]
    with torch.no_grad():
        t_logits = teacher(inputs).logits
    return Rollout(seqs, student(inputs).logits, t_logits, w.mask(inputs))
