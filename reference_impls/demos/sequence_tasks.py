r"""Demo builders of the sequence-level kinds: SFT, rationales, preferences, RL, ranking.

One builder per :class:`~reference_impls.registry.Kind`, each calling the spec's function with
the spec's ``params``. These losses see whole responses: sampled from the teacher, from a
frozen copy of the initial student (the reference), or from the student during training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reference_impls.demos.models import (
    DemoConfig,
    LMOutput,
    RewardModel,
    build_backbone,
    build_student,
    frozen_copy,
)
from reference_impls.demos.world import (
    Task,
    World,
    logprobs_of,
    make_task,
    response_logps,
    response_targets,
    sample_continuations,
    single_teacher_world,
    student_rollout,
    teacher_model,
    teacher_world_student,
    token_logps,
)
from reference_impls.registry import LossSpec


def sequence_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Cross-entropy of the student on teacher-sampled responses."""
    _, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        loss = spec.function(
            student(seqs[:, :-1]).logits, response_targets(seqs, cfg), **spec.params
        )
        return loss, loss

    return make_task(spec.name, w, student, step)


def rationale_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Two task-prefixed passes: prompt -> answer (last token), prompt -> whole response."""
    _, w = single_teacher_world(cfg, device, gen)
    label_task, rationale_task = cfg.vocab_size, cfg.vocab_size + 1  # input-only prefix ids
    student = build_student(cfg, device, extra_inputs=2)

    def prefixed(task_id: int, ids: Tensor) -> Tensor:
        return torch.cat([torch.full_like(ids[:, :1], task_id), ids], dim=1)

    def rationale_logits(ids: Tensor) -> Tensor:  # drop the task token's own prediction
        out: LMOutput = student(prefixed(rationale_task, ids))
        return out.logits[:, 1:]

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = batch[0]
        label_logits = student(prefixed(label_task, w.prompts(seqs))).logits[:, -1:]
        loss = spec.function(
            label_logits,
            seqs[:, -1:],
            rationale_logits(seqs[:, :-1]),
            response_targets(seqs, cfg),
            **spec.params,
        )
        return loss, loss

    return make_task(
        spec.name,
        w,
        student,
        step,
        student_logprobs=lambda ids: rationale_logits(ids).log_softmax(-1),
    )


@torch.no_grad()
def _teacher_vs_reference_pairs(
    w: World, teacher_seqs: Tensor, reference: nn.Module
) -> tuple[Tensor, Tensor]:
    """(chosen, rejected) ``[N, L]``: a teacher response vs a reference-student response."""
    cfg = w.cfg
    student_seqs = sample_continuations(
        logprobs_of(reference), w.prompts(teacher_seqs), cfg.response_len, w.gen
    )
    score_t = response_logps(teacher_model(w), teacher_seqs, cfg)
    score_s = response_logps(teacher_model(w), student_seqs, cfg)
    teacher_wins = (score_t >= score_s).unsqueeze(-1)
    chosen = torch.where(teacher_wins, teacher_seqs, student_seqs)
    rejected = torch.where(teacher_wins, student_seqs, teacher_seqs)
    return chosen, rejected


def pairwise_preference_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Offline pairs (teacher vs initial-student response); reference = the initial student."""
    _, w, student = teacher_world_student(cfg, device, gen)
    reference = frozen_copy(student)
    chosen, rejected = _teacher_vs_reference_pairs(w, w.train, reference)
    with torch.no_grad():
        ref_c, ref_r = (response_logps(reference, s, cfg) for s in (chosen, rejected))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, r, rc, rr = batch
        both = response_logps(student, torch.cat([c, r]), cfg)
        loss = spec.function(both[: len(c)], both[len(c) :], rc, rr, **spec.params)
        return loss, loss

    return make_task(spec.name, w, student, step, (chosen, rejected, ref_c, ref_r))


def reward_model_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """A reward model (student backbone + scalar head) trained on the preference pairs."""
    _, w = single_teacher_world(cfg, device, gen)
    student = build_student(cfg, device)  # the policy: untouched by reward modelling
    reward_model = RewardModel(build_backbone(cfg, device)).to(device)
    reference = frozen_copy(student)
    chosen, rejected = _teacher_vs_reference_pairs(w, w.train, reference)
    eval_chosen, eval_rejected = _teacher_vs_reference_pairs(w, w.held_out, reference)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, r = batch
        rewards = reward_model(torch.cat([c, r]))
        loss = spec.function(rewards[: len(c)], rewards[len(c) :], **spec.params)
        return loss, loss

    @torch.no_grad()
    def accuracy() -> dict[str, float]:
        won = reward_model(eval_chosen) > reward_model(eval_rejected)
        return {"pair_acc": won.float().mean().item()}

    return make_task(
        spec.name,
        w,
        reward_model,
        step,
        (chosen, rejected),
        student_logprobs=logprobs_of(student),
        extra_metrics=accuracy,
    )


def policy_gradient_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """REINFORCE on student samples; reward = teacher log-prob minus the batch mean."""
    _, w, student = teacher_world_student(cfg, device, gen)
    reference = frozen_copy(student)
    kl_coef = float(spec.params.get("kl_coef", 0.0))

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        seqs = sample_continuations(logprobs_of(student), batch[0], cfg.response_len, w.gen)
        inputs = seqs[:, :-1]
        mask = w.mask(inputs)
        logps = token_logps(student(inputs).logits, seqs)
        with torch.no_grad():
            ref_logps = token_logps(reference(inputs).logits, seqs)
            reward = response_logps(teacher_model(w), seqs, cfg)
        loss = spec.function(logps, ref_logps, reward - reward.mean(), mask, **spec.params)
        kl = torch.where(mask, logps.detach() - ref_logps, 0.0).sum(-1)
        return loss, -(reward - kl_coef * kl).mean()

    return make_task(spec.name, w, student, step, (w.prompts(w.train),), loss_label="-J")


def on_policy_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """The loss on responses sampled from the current student; logged: reverse KL on them."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        r = student_rollout(student, teacher, w, batch[0], cfg.response_len)
        loss = spec.function(
            r.student_logits, r.teacher_logits, r.seqs[:, 1:], r.mask, **spec.params
        )
        return loss, r.reverse_kl()

    return make_task(spec.name, w, student, step, (w.prompts(w.train),), loss_label="KL(q||p)")


def contrastive_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Teacher responses (the corpus) against responses sampled from the current student."""
    teacher, w, student = teacher_world_student(cfg, device, gen)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        teacher_seqs = batch[0]
        student_seqs = sample_continuations(
            logprobs_of(student), w.prompts(teacher_seqs), cfg.response_len, w.gen
        )
        both = torch.cat([teacher_seqs, student_seqs])[:, :-1]
        with torch.no_grad():
            t_logits = teacher(both).logits
        s_logits, mask, n = student(both).logits, w.mask(both), len(teacher_seqs)
        loss = spec.function(
            s_logits[:n], t_logits[:n], mask[:n], s_logits[n:], t_logits[n:], mask[n:],
            **spec.params,
        )  # fmt: skip
        return loss, loss

    return make_task(spec.name, w, student, step)


def _ranked_candidates(cfg: DemoConfig, w: World, reference: nn.Module) -> tuple[Tensor, Tensor]:
    """``[N, k, L]`` candidates (1 teacher, k-1 reference samples) best first, and their scores."""
    n, k = cfg.n_train, cfg.n_candidates
    with torch.no_grad():
        prompts = w.prompts(w.train).repeat_interleave(k - 1, dim=0)
        sampled = sample_continuations(logprobs_of(reference), prompts, cfg.response_len, w.gen)
        cands = torch.cat([w.train.unsqueeze(1), sampled.view(n, k - 1, -1)], dim=1)
        scores = response_logps(teacher_model(w), cands.flatten(0, 1), cfg).view(n, k)
        scores = scores / cfg.response_len  # mean token log-prob
        order = scores.argsort(dim=1, descending=True)  # best first
        cands = cands.gather(1, order.unsqueeze(-1).expand_as(cands))
        return cands, scores.gather(1, order)


def _ranking_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator, scored: bool
) -> Task:
    _, w, student = teacher_world_student(cfg, device, gen)
    cands, scores = _ranked_candidates(cfg, w, frozen_copy(student))
    k = cfg.n_candidates

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c, s = batch
        b = c.shape[0]
        seq_logps = response_logps(student, c.flatten(0, 1), cfg).view(b, k) / cfg.response_len
        best_nll = -seq_logps[:, 0]  # candidates are stored best first
        if scored:
            loss = spec.function(seq_logps, s, best_nll=best_nll, **spec.params)
        else:
            loss = spec.function(seq_logps, **spec.params)
        return (loss + best_nll.mean() if spec.with_sft else loss), loss

    return make_task(spec.name, w, student, step, (cands, scores))


def ranking_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Candidates ranked by the teacher, best first; the loss sees the student's scores."""
    return _ranking_task(spec, cfg, device, gen, scored=False)


def scored_ranking_task(
    spec: LossSpec, cfg: DemoConfig, device: torch.device, gen: torch.Generator
) -> Task:
    """Candidates with the teacher's scores; the loss also gets the best response's NLL."""
    return _ranking_task(spec, cfg, device, gen, scored=True)
