r"""Demos in which the student's own samples are the training data.

* :func:`on_policy_pg_task`, the builder of :attr:`~reference_impls.registry.Kind.ON_POLICY_PG`:
  the student samples responses, the teacher scores the sampled tokens, and the
  policy-gradient surrogate trains the student.
* Scenarios, which train any token-level loss (``--loss``) in a setting of their own:
  :func:`speculative_kd_task` (Speculative KD's interleaved samples: the teacher replaces
  student proposals outside its top-k) and :func:`privileged_self_distillation_task` (the
  teacher is the student network itself, reading a privileged prefix).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from reference_impls.demos.models import DemoConfig, build_student
from reference_impls.demos.world import (
    Task,
    logprobs_of,
    make_task,
    response_targets,
    sample_continuations,
    single_teacher_world,
    student_rollout,
    teacher_world_student,
    token_logps,
)
from reference_impls.on_policy import speculative_kd_sample
from reference_impls.registry import LossSpec

#: Teacher top-k of the Speculative KD demo (V = 32; the paper's default is 25 of ~256k).
SPECULATIVE_TOP_K = 4


def on_policy_pg_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Student samples scored by the teacher's log-probs of the sampled tokens; logged: KL(q||p)."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        r = student_rollout(student, teacher, w, batch[0], cfg.response_len)
        teacher_logprobs = token_logps(r.teacher_logits, r.seqs)
        loss = spec.function(
            r.student_logits, r.seqs[:, 1:], teacher_logprobs, r.mask, **spec.params
        )
        return loss, r.reverse_kl()

    return make_task(spec.name, w, student, step, (w.prompts(w.train),), loss_label="KL(q||p)")


@torch.no_grad()
def interleaved_continuations(
    student: nn.Module,
    teacher: nn.Module,
    prefix: Tensor,
    n_new: int,
    top_k: int,
    gen: torch.Generator,
) -> Tensor:
    """Append ``n_new`` tokens drawn by :func:`~reference_impls.speculative_kd_sample`."""
    seqs = prefix
    for _ in range(n_new):
        s_last, t_last = student(seqs).logits[:, -1], teacher(seqs).logits[:, -1]
        nxt = speculative_kd_sample(s_last, t_last, top_k=top_k, generator=gen)
        seqs = torch.cat([seqs, nxt.unsqueeze(-1)], dim=1)
    return seqs


def speculative_kd_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """The token-level loss ``spec`` on interleaved student/teacher samples, drawn every step."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = interleaved_continuations(
            student, teacher, batch[0], cfg.response_len, SPECULATIVE_TOP_K, w.gen
        )
        inputs = seqs[:, :-1]
        with torch.no_grad():
            t_logits = teacher(inputs).logits
        loss = spec.function(student(inputs).logits, t_logits, w.mask(inputs), **spec.params)
        return loss, loss

    return make_task(spec.name, w, student, step, (w.prompts(w.train),))


@torch.no_grad()
def privileged_logits(model: nn.Module, privileged: Tensor, inputs: Tensor, sep: int) -> Tensor:
    """The model's logits on ``inputs`` read after ``[privileged, sep]``: the teacher pass.

    Run without autograd, so that no gradient reaches the model through the teacher.
    """
    context = torch.cat([privileged, torch.full_like(privileged[:, :1], sep), inputs], dim=1)
    logits: Tensor = model(context).logits[:, privileged.shape[1] + 1 :]
    return logits


def self_distillation_loss(
    spec: LossSpec, model: nn.Module, privileged: Tensor, inputs: Tensor, mask: Tensor, sep: int
) -> Tensor:
    """``spec`` between the model on ``inputs`` and the model given the privileged prefix."""
    teacher_logits = privileged_logits(model, privileged, inputs, sep)
    return spec.function(model(inputs).logits, teacher_logits, mask, **spec.params)


def privileged_self_distillation_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """On-policy self-distillation: the teacher is the student network reading the answer.

    Each step the student samples responses to the batch's prompts; the same network, given
    the reference response of the prompt (the "answer") and a separator before the sampled
    sequence, scores them, and ``spec`` pulls the plain pass towards that privileged pass.
    A tiny network trained from scratch cannot read a prefix yet (a pretrained LLM can), so
    the objective adds the cross-entropy of the privileged pass on the reference sequence;
    the logged value is ``spec`` alone.
    """
    _, w = single_teacher_world(cfg, device, gen)
    wide = dataclasses.replace(cfg, max_len=cfg.response_len + 1 + cfg.seq_len)
    sep = cfg.vocab_size  # an input-only id
    student = build_student(wide, device, extra_inputs=1)
    start = 1 + cfg.prompt_len

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        reference = batch[0]
        answer = reference[:, start:]
        seqs = sample_continuations(
            logprobs_of(student), w.prompts(reference), cfg.response_len, w.gen
        )
        inputs = seqs[:, :-1]
        loss = self_distillation_loss(spec, student, answer, inputs, w.mask(inputs), sep)
        context = torch.cat([answer, torch.full_like(answer[:, :1], sep), reference[:, :-1]], 1)
        read_answer = student(context).logits[:, answer.shape[1] + 1 :]
        ce = nn.functional.cross_entropy(
            read_answer.flatten(0, 1), response_targets(reference, cfg).flatten(), ignore_index=-100
        )
        return loss + ce, loss

    return make_task(spec.name, w, student, step)
