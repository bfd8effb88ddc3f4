r"""Tiny end-to-end demos: every loss of :data:`reference_impls.REGISTRY` trains a student.

``python -m reference_impls.<name>`` (or :func:`run_demo`) builds a small random *teacher*
causal LM, samples a synthetic corpus from it, and trains a smaller *student* with the loss
``<name>`` for 100-300 steps, in a few seconds on a CPU. It prints the loss and the
student-teacher divergence

.. math::
    D = \frac{1}{|\mathcal{R}|}\sum_{t\in\mathcal{R}}
        \mathrm{KL}\big(p(\cdot \mid y_{<t}) \,\|\, q_\theta(\cdot \mid y_{<t})\big)

over the response positions :math:`\mathcal{R}` of held-out teacher sequences, measured the
same way for every loss, so that preference, ranking and reward losses also show how close
they bring the student to the teacher (or, for a reward model, that they do not move it).

Setting (one seed fixes everything): vocabulary :math:`V = 32` (id 0 doubles as BOS),
sequences ``[BOS, prompt (3 tokens), response (9 tokens)]``; the teacher has 2 transformer
blocks of width 48 and an LM head scaled up so that its next-token distributions are peaked;
the student has 1 block of width 32. Losses act on the response tokens only (the mask).
How each loss family gets its inputs is described in :data:`DEMO_NOTES`.

The pieces: :func:`build_task` (models, data pools, the step's loss), :func:`train_loop` (the
optimisation loop, also used by :mod:`reference_impls.zoo`), :func:`train_step` (one optimiser
step) and :func:`run_demo` (loop plus measurements).

**Scale-out.** The same code runs unchanged under
``torchrun --nproc_per_node=K -m reference_impls.<name>`` (or ``python -m
torch.distributed.run ...``): :func:`distributed` joins the process group that ``torchrun``
describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (gloo on CPU, nccl on CUDA, one GPU per
rank), :func:`train_loop` wraps the step in ``DistributedDataParallel``, every rank draws the
same *global* batch of ``batch_size`` pool items and computes on its strided shard of it
(:func:`shard_indices`, ``batch_size / K`` items), DDP averages the gradients, and only rank 0
prints or saves. Why the result equals a single-process run with the same global batch: each
rank's loss is a mean over its counted tokens, and DDP averages the K rank gradients, which is
the gradient of the global token mean only if every rank counts the same number of tokens. The
demos guarantee it: every sequence has the same fixed response length and the mask counts
exactly the response positions, and ``batch_size`` must be divisible by K (else an error).
Tasks that sample from the student during a step (``minillm_loss``, ``kl_regularized_pg_loss``)
draw on each rank from a generator re-seeded per rank, so they train correctly under DDP but do
not reproduce the single-process samples. This module depends on torch alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from reference_impls import REGISTRY, TOKEN_LEVEL_LOSSES
from reference_impls.bitdistiller import teacher_confidence

BOS = 0
IGNORE = -100

# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and optimiser settings shared by all demos (small enough for a CPU)."""

    vocab_size: int = 32
    uld_teacher_vocab: int = 48
    prompt_len: int = 3
    response_len: int = 9
    max_len: int = 16
    n_heads: int = 2
    d_teacher: int = 48
    teacher_layers: int = 2
    teacher_sharpness: float = 4.0
    d_student: int = 32
    student_layers: int = 1
    n_train: int = 512
    n_eval: int = 128
    n_candidates: int = 4
    batch_size: int = 32
    lr: float = 1e-2
    steps: int = 150

    @property
    def seq_len(self) -> int:
        """Length of a full sequence ``[BOS, prompt, response]``."""
        return 1 + self.prompt_len + self.response_len


#: Per-loss changes to :class:`DemoConfig` (tuned so each default run shows its loss at work).
#: Sampled-gradient and preference losses need a smaller learning rate: at ``1e-2`` REINFORCE
#: collapses onto a few modes and DPO over-optimises its pairs within a few dozen steps.
DEMO_OVERRIDES: dict[str, dict[str, Any]] = {
    "dpo_loss": {"lr": 1e-3, "steps": 100},
    "kl_regularized_pg_loss": {"lr": 2e-3, "steps": 300},
}

#: Non-default parameters of token-level losses (``beta = 0.5`` would repeat js_divergence).
TOKEN_PARAMS: dict[str, dict[str, float]] = {"generalized_jsd": {"beta": 0.9}}

#: What each demo feeds its loss, printed in the header of a run.
DEMO_NOTES: dict[str, str] = {
    **{
        name: "student vs teacher logits on teacher-sampled sequences"
        for name in TOKEN_LEVEL_LOSSES
    },
    "generalized_jsd": (
        "student vs teacher logits on teacher-sampled sequences; beta = 0.9 (close to the "
        "reverse-KL end; beta = 0.5 is js_divergence)"
    ),
    "confidence_aware_kl": (
        "student vs teacher logits on teacher-sampled sequences; gamma = teacher confidence "
        "measured once on the training set"
    ),
    "multi_teacher_kl": (
        "3 teachers (one random teacher and two perturbed copies), uniform weights; data and "
        "divergence use their mixture"
    ),
    "sft_loss": "cross-entropy on teacher-sampled responses (sequence-level KD)",
    "rationale_sft_loss": (
        "two task-prefixed passes: [label] prompt -> last response token (the answer); "
        "[rationale] prompt -> the whole teacher response; the divergence uses the rationale mode"
    ),
    "dpo_loss": (
        "offline pairs per prompt: a teacher response and a response of the initial student, "
        "chosen = higher teacher log-prob; reference = frozen initial student; beta = 0.1 "
        "(trained much longer, DPO over-optimises and the divergence climbs again)"
    ),
    "bradley_terry_loss": (
        "trains a reward model (student backbone + scalar head) on the DPO pairs; the student "
        "LM is not trained, so its divergence stays flat; extra column: held-out pair accuracy"
    ),
    "kl_regularized_pg_loss": (
        "REINFORCE on student samples, reward = teacher log-prob of the response minus the "
        "batch mean (baseline), reference = frozen initial student, kl_coef = 1; logged loss = "
        "the objective -(reward - kl_coef * KL) estimated on the batch, not the surrogate"
    ),
    "minillm_loss": (
        "MiniLLM surrogate on responses sampled from the current student; the surrogate's value "
        "is not the objective, so the logged loss is the per-token reverse KL(q||p) on them"
    ),
    "uld_loss": (
        "teacher vocabulary 48 vs student 32: the teacher's tokenizer is simulated by an "
        "injective relabelling of the 32 symbols (16 teacher ids never occur, logits -inf), so "
        "positions align; objective = ULD + cross-entropy as in the paper; logged loss = ULD"
    ),
    **{
        name: (
            "student hidden (width 32) vs teacher hidden (width 48) through a learned "
            "projection; the student reads out with the projection and the teacher's frozen "
            "LM head, so matching hidden states matches distributions"
        )
        for name in ("hidden_mse", "hidden_l1", "hidden_cosine", "feature_cross_entropy")
    },
    "mmd": (
        "MMD between the sets of projected student and teacher hidden states (token order "
        "ignored), so as in NST objective = MMD + cross-entropy on teacher samples through the "
        "projection and the teacher's frozen LM head; logged loss = MMD"
    ),
    "attention_kl": (
        "last-layer attention maps (2 heads each); objective = attention KL + cross-entropy on "
        "teacher samples (attention alone carries no output distribution); logged loss = "
        "attention KL"
    ),
    "rrhf_loss": (
        "4 candidates per prompt (1 teacher, 3 initial-student samples) scored by the teacher's "
        "mean token log-prob; student scores are length-normalised log-probs; SFT on the best"
    ),
    "pro_loss": (
        "the RRHF candidates ranked by the teacher, best first; objective = PRO + SFT on the "
        "best candidate as in the paper (PRO alone pushes scores apart without bound); "
        "logged loss = PRO"
    ),
}


def demo_note(name: str) -> str:
    """What the demo of ``name`` feeds its loss (top-k notes live in ``topk_demo``)."""
    if name.startswith("topk_"):
        from reference_impls.topk_demo import TOPK_DEMO_NOTES  # lazy: it imports this module

        return TOPK_DEMO_NOTES.get(name, "")
    return DEMO_NOTES.get(name, "")


# ----------------------------------------------------------------------------------- models


class LMOutput(NamedTuple):
    """What a tiny LM exposes: logits, final hidden states and each layer's attention."""

    logits: Tensor  # [B, T, V]
    hidden: Tensor  # [B, T, d], after the final layer norm (the LM head's input)
    attentions: list[Tensor]  # per layer [B, heads, T, T], rows sum to 1


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written out so that its probabilities are visible."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [B, heads, T, d_head]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_heads)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        probs = scores.masked_fill(future, float("-inf")).softmax(-1)
        y = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(y), probs


class Block(nn.Module):
    """Pre-norm transformer block: attention and a 2x-wide MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, probs = self.attn(self.ln1(x))
        x = x + a
        return x + self.mlp(self.ln2(x)), probs


class TinyLM(nn.Module):
    """Token + position embeddings, a few blocks, final layer norm and an optional LM head.

    ``extra_inputs`` adds input-only token ids ``vocab_size, ...`` (task prefixes) that the
    head never predicts. ``vocab_size=None`` builds a backbone without head (logits empty).
    """

    def __init__(
        self,
        vocab_size: int | None,
        d_model: int,
        n_layers: int,
        n_heads: int,
        max_len: int,
        *,
        input_vocab: int | None = None,
    ) -> None:
        super().__init__()
        n_inputs = input_vocab if input_vocab is not None else vocab_size
        if n_inputs is None:
            raise ValueError("a backbone without head needs input_vocab")
        self.tok = nn.Embedding(n_inputs, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size) if vocab_size is not None else None

    def forward(self, ids: Tensor) -> LMOutput:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        attentions = []
        for block in self.blocks:
            x, probs = block(x)
            attentions.append(probs)
        hidden = self.ln_f(x)
        logits = self.head(hidden) if self.head is not None else hidden[..., :0]
        return LMOutput(logits, hidden, attentions)


class ProjectedStudent(nn.Module):
    """Student for hidden-state losses: backbone, learned projection, teacher's frozen head.

    Reading out through the teacher's head makes ``projection(h_student) = h_teacher`` the
    condition for equal distributions, so a hidden-state loss alone can distil the teacher.
    """

    def __init__(self, backbone: TinyLM, d_teacher: int, teacher_head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(backbone.ln_f.normalized_shape[0], d_teacher)
        self._teacher_head = [teacher_head]  # in a list: not a registered (trainable) module

    def forward(self, ids: Tensor) -> LMOutput:
        out = self.backbone(ids)
        logits = self._teacher_head[0](self.projection(out.hidden))
        return LMOutput(logits, out.hidden, out.attentions)


class RewardModel(nn.Module):
    """Student-sized backbone with a scalar head read at the last position."""

    def __init__(self, backbone: TinyLM) -> None:
        super().__init__()
        self.backbone = backbone
        self.value = nn.Linear(backbone.ln_f.normalized_shape[0], 1)

    def forward(self, ids: Tensor) -> Tensor:
        reward: Tensor = self.value(self.backbone(ids).hidden[:, -1])
        return reward.squeeze(-1)


def build_teacher(cfg: DemoConfig, vocab_size: int, device: torch.device) -> TinyLM:
    """A random frozen teacher; its head is scaled up so that it makes peaked predictions."""
    teacher = TinyLM(vocab_size, cfg.d_teacher, cfg.teacher_layers, cfg.n_heads, cfg.max_len)
    assert teacher.head is not None
    with torch.no_grad():
        teacher.head.weight.mul_(cfg.teacher_sharpness)
    return teacher.to(device).eval().requires_grad_(False)


def build_student(cfg: DemoConfig, device: torch.device, *, extra_inputs: int = 0) -> TinyLM:
    """A fresh student LM over the student vocabulary."""
    return TinyLM(
        cfg.vocab_size,
        cfg.d_student,
        cfg.student_layers,
        cfg.n_heads,
        cfg.max_len,
        input_vocab=cfg.vocab_size + extra_inputs,
    ).to(device)


def build_backbone(cfg: DemoConfig, device: torch.device) -> TinyLM:
    """A student-sized LM without head (for the reward model and the projected student)."""
    return TinyLM(
        None,
        cfg.d_student,
        cfg.student_layers,
        cfg.n_heads,
        cfg.max_len,
        input_vocab=cfg.vocab_size,
    ).to(device)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen snapshot, e.g. the initial student as DPO/RL reference."""
    return copy.deepcopy(model).eval().requires_grad_(False)


# ------------------------------------------------------------------------------------- data

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


def shard_indices(n: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """Items ``rank, rank + world_size, ...`` of ``n``: the rank's strided shard (all for one rank).

    :func:`train_loop` applies it to each global batch, so the shards of a step partition it.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got {rank} of {world_size}")
    return torch.arange(rank, n, world_size)


# ------------------------------------------------------------------------------------ tasks

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


@dataclass
class _World:
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
        return response_mask(inputs, self.cfg)

    def prompts(self, seqs: Tensor) -> Tensor:
        return seqs[:, : 1 + self.cfg.prompt_len]


def _logprobs_of(model: Callable[[Tensor], LMOutput]) -> LogProbFn:
    return lambda ids: model(ids).logits.log_softmax(-1)


def _task(
    name: str,
    w: _World,
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
        student_logprobs or _logprobs_of(trained),
        w.teacher_logprobs,
        w.held_out,
        **kwargs,  # type: ignore[arg-type]
        module=trained,
        sampler=w.gen,
    )


def _single_teacher_world(
    cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> tuple[TinyLM, _World]:
    teacher = build_teacher(cfg, cfg.vocab_size, device)
    return teacher, _World(cfg, device, gen, _logprobs_of(teacher))


def _token_task(name: str, cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    teacher, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    fn = REGISTRY[name]
    params: dict[str, object] = dict(TOKEN_PARAMS.get(name, {}))
    if name == "confidence_aware_kl":
        labels = response_targets(w.train, cfg)
        params["gamma"] = teacher_confidence(teacher(w.train[:, :-1]).logits, labels)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        inputs = batch[0][:, :-1]
        with torch.no_grad():
            t_logits = teacher(inputs).logits
        loss = fn(student(inputs).logits, t_logits, w.mask(inputs), **params)
        return loss, loss

    return _task(name, w, student, step)


def _multi_teacher_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
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

    w = _World(cfg, device, gen, mixture)
    student = build_student(cfg, device)
    fn = REGISTRY["multi_teacher_kl"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        inputs = batch[0][:, :-1]
        with torch.no_grad():
            t_logits = [t(inputs).logits for t in teachers]
        loss = fn(student(inputs).logits, t_logits, w.mask(inputs))
        return loss, loss

    return _task("multi_teacher_kl", w, student, step)


def _sft_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    fn = REGISTRY["sft_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        loss = fn(student(seqs[:, :-1]).logits, response_targets(seqs, cfg))
        return loss, loss

    return _task("sft_loss", w, student, step)


def _rationale_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    label_task, rationale_task = cfg.vocab_size, cfg.vocab_size + 1  # input-only prefix ids
    student = build_student(cfg, device, extra_inputs=2)
    fn = REGISTRY["rationale_sft_loss"]

    def prefixed(task_id: int, ids: Tensor) -> Tensor:
        return torch.cat([torch.full_like(ids[:, :1], task_id), ids], dim=1)

    def rationale_logits(ids: Tensor) -> Tensor:  # drop the task token's own prediction
        out: LMOutput = student(prefixed(rationale_task, ids))
        return out.logits[:, 1:]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        label_logits = student(prefixed(label_task, w.prompts(seqs))).logits[:, -1:]
        loss = fn(
            label_logits, seqs[:, -1:], rationale_logits(seqs[:, :-1]), response_targets(seqs, cfg)
        )
        return loss, loss

    return _task(
        "rationale_sft_loss",
        w,
        student,
        step,
        student_logprobs=lambda ids: rationale_logits(ids).log_softmax(-1),
    )


@torch.no_grad()
def _teacher_vs_reference_pairs(
    w: _World, teacher_seqs: Tensor, reference: nn.Module
) -> tuple[Tensor, Tensor]:
    """(chosen, rejected) ``[N, L]``: a teacher response vs a reference-student response."""
    cfg = w.cfg
    student_seqs = sample_continuations(
        _logprobs_of(reference), w.prompts(teacher_seqs), cfg.response_len, w.gen
    )
    score_t = response_logps(_teacher_model(w), teacher_seqs, cfg)
    score_s = response_logps(_teacher_model(w), student_seqs, cfg)
    teacher_wins = (score_t >= score_s).unsqueeze(-1)
    chosen = torch.where(teacher_wins, teacher_seqs, student_seqs)
    rejected = torch.where(teacher_wins, student_seqs, teacher_seqs)
    return chosen, rejected


def _teacher_model(w: _World) -> Callable[[Tensor], LMOutput]:
    """Wrap the world's teacher log-probs as a model whose logits are those log-probs."""
    return lambda ids: LMOutput(w.teacher_logprobs(ids), ids[..., :0].float(), [])


def _dpo_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    reference = frozen_copy(student)
    chosen, rejected = _teacher_vs_reference_pairs(w, w.train, reference)
    with torch.no_grad():
        ref_c, ref_r = (response_logps(reference, s, cfg) for s in (chosen, rejected))
    fn = REGISTRY["dpo_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, r, rc, rr = batch
        both = response_logps(student, torch.cat([c, r]), cfg)
        loss = fn(both[: len(c)], both[len(c) :], rc, rr, beta=0.1)
        return loss, loss

    return _task("dpo_loss", w, student, step, (chosen, rejected, ref_c, ref_r))


def _bradley_terry_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)  # the policy: untouched by reward modelling
    reward_model = RewardModel(build_backbone(cfg, device)).to(device)
    reference = frozen_copy(student)
    chosen, rejected = _teacher_vs_reference_pairs(w, w.train, reference)
    eval_chosen, eval_rejected = _teacher_vs_reference_pairs(w, w.held_out, reference)
    fn = REGISTRY["bradley_terry_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, r = batch
        rewards = reward_model(torch.cat([c, r]))
        loss = fn(rewards[: len(c)], rewards[len(c) :])
        return loss, loss

    @torch.no_grad()
    def accuracy() -> dict[str, float]:
        won = reward_model(eval_chosen) > reward_model(eval_rejected)
        return {"pair_acc": won.float().mean().item()}

    return _task(
        "bradley_terry_loss",
        w,
        reward_model,
        step,
        (chosen, rejected),
        student_logprobs=_logprobs_of(student),
        extra_metrics=accuracy,
    )


def _pg_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    reference = frozen_copy(student)
    fn, kl_coef = REGISTRY["kl_regularized_pg_loss"], 1.0

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = sample_continuations(_logprobs_of(student), batch[0], cfg.response_len, w.gen)
        inputs = seqs[:, :-1]
        mask = w.mask(inputs)
        logps = token_logps(student(inputs).logits, seqs)
        with torch.no_grad():
            ref_logps = token_logps(reference(inputs).logits, seqs)
            reward = response_logps(_teacher_model(w), seqs, cfg)
        loss = fn(logps, ref_logps, reward - reward.mean(), mask, kl_coef)
        kl = torch.where(mask, logps.detach() - ref_logps, 0.0).sum(-1)
        return loss, -(reward - kl_coef * kl).mean()

    return _task("kl_regularized_pg_loss", w, student, step, (w.prompts(w.train),), loss_label="-J")


def _minillm_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    teacher, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    fn = REGISTRY["minillm_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = sample_continuations(_logprobs_of(student), batch[0], cfg.response_len, w.gen)
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_logits = teacher(inputs).logits
        s_logits, mask = student(inputs).logits, w.mask(inputs)
        loss = fn(s_logits, t_logits, seqs[:, 1:], mask)
        log_q, log_p = s_logits.detach().log_softmax(-1), t_logits.log_softmax(-1)
        reverse_kl = (log_q.exp() * (log_q - log_p)).sum(-1)[mask].mean()
        return loss, reverse_kl

    return _task("minillm_loss", w, student, step, (w.prompts(w.train),), loss_label="KL(q||p)")


def _uld_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
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

    w = _World(cfg, device, gen, teacher_logprobs)
    student = build_student(cfg, device)
    fn, ce = REGISTRY["uld_loss"], REGISTRY["sft_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_logits = teacher_logits(inputs)
        s_logits = student(inputs).logits
        mask = w.mask(inputs)
        uld = fn(s_logits, t_logits, mask, mask)
        return uld + ce(s_logits, response_targets(seqs, cfg)), uld

    return _task("uld_loss", w, student, step)


def _hidden_task(name: str, cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    teacher, w = _single_teacher_world(cfg, device, gen)
    assert teacher.head is not None
    student = ProjectedStudent(build_backbone(cfg, device), cfg.d_teacher, teacher.head)
    student.to(device)
    fn, ce = REGISTRY[name], REGISTRY["sft_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        inputs = batch[0][:, :-1]
        with torch.no_grad():
            t_hidden = teacher(inputs).hidden
        out = student(inputs)
        loss = fn(out.hidden, t_hidden, w.mask(inputs), projection=student.projection)
        if name == "mmd":  # a distribution-level match: paired with cross-entropy (NST)
            return loss + ce(out.logits, response_targets(batch[0], cfg)), loss
        return loss, loss

    return _task(name, w, student, step)


def _attention_task(cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    teacher, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    fn, ce = REGISTRY["attention_kl"], REGISTRY["sft_loss"]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_attn = teacher(inputs).attentions[-1]
        out = student(inputs)
        att = fn(out.attentions[-1], t_attn, w.mask(inputs))
        return att + ce(out.logits, response_targets(seqs, cfg)), att

    return _task("attention_kl", w, student, step)


def _ranking_task(name: str, cfg: DemoConfig, device: torch.device, gen: torch.Generator) -> Task:
    _, w = _single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)
    reference = frozen_copy(student)
    n, k = cfg.n_train, cfg.n_candidates
    with torch.no_grad():
        prompts = w.prompts(w.train).repeat_interleave(k - 1, dim=0)
        sampled = sample_continuations(_logprobs_of(reference), prompts, cfg.response_len, w.gen)
        cands = torch.cat([w.train.unsqueeze(1), sampled.view(n, k - 1, -1)], dim=1)  # [N, k, L]
        scores = response_logps(_teacher_model(w), cands.flatten(0, 1), cfg).view(n, k)
        scores = scores / cfg.response_len  # mean token log-prob
        order = scores.argsort(dim=1, descending=True)  # best first
        cands = cands.gather(1, order.unsqueeze(-1).expand_as(cands))
        scores = scores.gather(1, order)
    fn = REGISTRY[name]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, s = batch
        b = c.shape[0]
        seq_logps = response_logps(student, c.flatten(0, 1), cfg).view(b, k) / cfg.response_len
        # candidates are stored best first: PRO needs that order, RRHF's SFT term the first
        best_nll = -seq_logps[:, 0]
        if name == "rrhf_loss":
            loss = fn(seq_logps, s, best_nll=best_nll)
            return loss, loss
        loss = fn(seq_logps)
        return loss + best_nll.mean(), loss  # PRO adds SFT on the best response

    return _task(name, w, student, step, (cands, scores))


_HIDDEN = ("hidden_mse", "hidden_l1", "hidden_cosine", "feature_cross_entropy", "mmd")


def build_task(name: str, cfg: DemoConfig, device: torch.device, seed: int) -> Task:
    """Seed everything, build teacher(s), corpus and student for ``name``; return its Task."""
    if name not in REGISTRY:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(REGISTRY)}")
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    if name in TOKEN_LEVEL_LOSSES:
        return _token_task(name, cfg, device, gen)
    if name in _HIDDEN:
        return _hidden_task(name, cfg, device, gen)
    if name in ("rrhf_loss", "pro_loss"):
        return _ranking_task(name, cfg, device, gen)
    if name.startswith("topk_"):  # offline top-k distillation from a teacher cache
        from reference_impls.topk_demo import build_topk_task  # lazy: it imports this module

        return build_topk_task(name, cfg, device, gen)
    builders: dict[str, Callable[[DemoConfig, torch.device, torch.Generator], Task]] = {
        "multi_teacher_kl": _multi_teacher_task,
        "sft_loss": _sft_task,
        "rationale_sft_loss": _rationale_task,
        "dpo_loss": _dpo_task,
        "bradley_terry_loss": _bradley_terry_task,
        "kl_regularized_pg_loss": _pg_task,
        "minillm_loss": _minillm_task,
        "uld_loss": _uld_task,
        "attention_kl": _attention_task,
    }
    if name not in builders:
        raise NotImplementedError(f"no demo is defined for the registry loss {name!r}")
    return builders[name](cfg, device, gen)


# ------------------------------------------------------------------------------------- loop


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


@torch.no_grad()
def divergence(task: Task, cfg: DemoConfig) -> float:
    r"""Mean forward KL(teacher || student) over the response positions of held-out sequences."""
    inputs = task.eval_seqs[:, :-1]
    log_p, log_q = task.teacher_logprobs(inputs), task.student_logprobs(inputs)
    p = log_p.exp()
    per_token = torch.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)
    return float(per_token[response_mask(inputs, cfg)].mean())


# ------------------------------------------------------------------------------ distribution


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


def _rank_device(device: torch.device) -> torch.device:
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
        yield _rank_device(device)
        return
    if not dist.is_available():
        raise RuntimeError("launched by torchrun, but this torch build lacks torch.distributed")
    device = _rank_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


class _StepModule(nn.Module):
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


def _ddp_task(task: Task, ctx: DistContext, seed: int) -> Task:
    """``task`` with its step run through DistributedDataParallel (gradients averaged)."""
    if task.module is None:
        raise ValueError(f"task {task.name!r} names no trained module, so DDP cannot wrap it")
    device_ids = [ctx.local_rank] if task.params[0].is_cuda else None
    ddp = DistributedDataParallel(_StepModule(task.module, task.step), device_ids=device_ids)
    if task.sampler is not None:  # on-policy samples: a different stream on every rank
        task.sampler.manual_seed(seed + 7919 * (ctx.rank + 1))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = ddp(*batch)
        return out

    return dataclasses.replace(task, step=step)


def _mean_over_ranks(value: float, ctx: DistContext, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in a single process)."""
    if ctx.world_size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / ctx.world_size


# ------------------------------------------------------------------------------------- loop


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
    the previous call, averaged over the ranks; it runs on every rank.
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
        task = _ddp_task(task, ctx, seed)
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
            on_log(step, _mean_over_ranks(sum(window) / len(window), ctx, device))
            window = []
            paused += time.perf_counter() - pause
        if step < steps:
            window.append(train_step(task, optimizer, batch))
            if record_grad_norms:
                stats.grad_norms.append(_grad_norm(task.params))
    stats.seconds = time.perf_counter() - start - paused
    return stats


@dataclass
class DemoResult:
    """Outcome of a demo run, one entry per logging point.

    ``losses[i]`` is the mean logged loss over the steps since the previous logging point
    (the first point is the untrained student's first batch); ``divergences[i]`` the
    held-out KL(teacher || student) after ``steps[i]`` optimiser steps. ``loss_label`` names
    the logged quantity (``loss``, or the objective for policy-gradient surrogates, see
    :data:`DEMO_NOTES`); ``extras`` holds task-specific metrics (reward-model pair accuracy).
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
) -> DemoResult:
    """Train a tiny student with the registry loss ``name`` and record loss and divergence.

    Under ``torchrun`` the run is data-parallel (see the module docstring); ``save`` writes the
    trained module's ``state_dict`` there (rank 0 only) with ``torch.save``.
    """
    cfg = config or dataclasses.replace(DemoConfig(), **DEMO_OVERRIDES.get(name, {}))
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
            return _train(name, cfg, rank_dev, seed, n_steps, every, quiet, save)
    finally:
        torch.set_num_threads(threads)


def _train(
    name: str,
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
    task = build_task(name, cfg, dev, seed)
    result = DemoResult(name, [], [], [], str(dev), 0.0, task.loss_label, world_size=ctx.world_size)
    show = not quiet and ctx.is_main  # only rank 0 prints
    if show:
        ranks = f" ({ctx.world_size} ranks, DDP)" if ctx.world_size > 1 else ""
        print(f"{name} on {dev}{ranks}: {demo_note(name)}")
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


def main(name: str, argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m reference_impls.<name>``; returns the exit status."""
    doc = (getattr(REGISTRY.get(name), "__doc__", None) or "").strip().splitlines()
    parser = argparse.ArgumentParser(
        prog=f"python -m reference_impls.{name}",
        description=f"Train a tiny student with {name}: {doc[0] if doc else ''}",
        epilog=(
            "Data-parallel: torchrun --nproc_per_node=K -m reference_impls."
            f"{name} [options] (gloo on CPU, nccl on GPU; the global batch is unchanged)."
        ),
    )
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=None, help="steps between table rows")
    parser.add_argument(
        "--save", type=Path, default=None, help="write the trained student's state_dict here"
    )
    args = parser.parse_args(argv)
    try:
        resolve_device(args.device)
    except RuntimeError as err:  # CUDA requested but absent: a message, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run_demo(
        name,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        log_every=args.log_every,
        save=args.save,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # the group is gone by now: read torchrun's env
        print(
            f"done in {result.seconds:.1f} s: {result.loss_label} {result.losses[0]:.4f} -> "
            f"{result.losses[-1]:.4f}, KL(teacher||student) {result.divergences[0]:.4f} -> "
            f"{result.divergences[-1]:.4f}"
        )
    return 0
