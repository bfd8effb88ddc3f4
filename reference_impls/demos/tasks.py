r"""One demo builder per loss kind, and what each kind's demo feeds its loss.

:func:`build_task` looks the loss up in :mod:`reference_impls.registry` and calls the builder
of its kind; a new kind needs one builder and one entry in :data:`BUILDERS`, a new loss of an
existing kind nothing here. :data:`SCENARIOS` are demos of a training setting rather than of a
loss: each trains any token-level loss (``python -m reference_impls.demos SCENARIO --loss L``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from reference_impls.demos.logit_tasks import (
    DEMO_K,
    DEMO_SAMPLES,
    attention_task,
    cross_tokenizer_task,
    hidden_state_task,
    multi_teacher_task,
    sparse_sampled_task,
    sparse_topk_task,
    token_level_task,
)
from reference_impls.demos.models import DemoConfig
from reference_impls.demos.on_policy_tasks import (
    SPECULATIVE_TOP_K,
    on_policy_pg_task,
    privileged_self_distillation_task,
    speculative_kd_task,
)
from reference_impls.demos.sequence_tasks import (
    contrastive_task,
    on_policy_task,
    pairwise_preference_task,
    policy_gradient_task,
    ranking_task,
    rationale_task,
    reward_model_task,
    scored_ranking_task,
    sequence_task,
)
from reference_impls.demos.world import Task
from reference_impls.registry import TOKEN_LEVEL_LOSSES, Kind, LossSpec, spec_of

Builder = Callable[[LossSpec, DemoConfig, torch.device, torch.Generator], Task]


class KindDemo(NamedTuple):
    """How the demos train one kind of loss: the builder and what it feeds the loss."""

    build: Builder
    note: str


_CANDIDATES = (
    "4 candidates per prompt (1 teacher, 3 initial-student samples) scored by the teacher's "
    "mean token log-prob; student scores are length-normalised log-probs"
)

#: The demo of every kind (a test checks that every kind has one).
BUILDERS: dict[Kind, KindDemo] = {
    Kind.TOKEN_LEVEL: KindDemo(
        token_level_task, "student vs teacher logits on teacher-sampled sequences"
    ),
    Kind.MULTI_TEACHER: KindDemo(
        multi_teacher_task,
        "3 teachers (one random teacher and two perturbed copies), uniform weights; data and "
        "divergence use their mixture",
    ),
    Kind.SEQUENCE: KindDemo(
        sequence_task, "cross-entropy on teacher-sampled responses (sequence-level KD)"
    ),
    Kind.RATIONALE: KindDemo(
        rationale_task,
        "two task-prefixed passes: [label] prompt -> last response token (the answer); "
        "[rationale] prompt -> the whole teacher response; the divergence uses the rationale "
        "mode",
    ),
    Kind.PAIRWISE_PREFERENCE: KindDemo(
        pairwise_preference_task,
        "offline pairs per prompt: a teacher response and a response of the initial student, "
        "chosen = higher teacher log-prob; reference = frozen initial student",
    ),
    Kind.REWARD_MODEL: KindDemo(
        reward_model_task,
        "trains a reward model (student backbone + scalar head) on the preference pairs; the "
        "student LM is not trained, so its divergence stays flat; extra column: held-out pair "
        "accuracy",
    ),
    Kind.POLICY_GRADIENT: KindDemo(
        policy_gradient_task,
        "REINFORCE on student samples, reward = teacher log-prob of the response minus the "
        "batch mean (baseline), reference = frozen initial student; logged loss = the "
        "objective -(reward - kl_coef * KL) estimated on the batch, not the surrogate",
    ),
    Kind.ON_POLICY: KindDemo(
        on_policy_task,
        "surrogate on responses sampled from the current student; the surrogate's value is "
        "not the objective, so the logged loss is the per-token reverse KL(q||p) on them",
    ),
    Kind.ON_POLICY_PG: KindDemo(
        on_policy_pg_task,
        "policy-gradient surrogate on responses sampled from the current student, scored by "
        "the teacher's log-probs of the sampled tokens; logged: the exact per-token reverse "
        "KL(q||p) on them (the surrogate's value is not the objective)",
    ),
    Kind.CONTRASTIVE: KindDemo(
        contrastive_task,
        "teacher-sampled responses against responses sampled from the current student at "
        "every step, same prompts",
    ),
    Kind.CROSS_TOKENIZER: KindDemo(
        cross_tokenizer_task,
        "teacher vocabulary 48 vs student 32: the teacher's tokenizer is simulated by an "
        "injective relabelling of the 32 symbols (16 teacher ids never occur, logits -inf), "
        "so positions align",
    ),
    Kind.HIDDEN_STATE: KindDemo(
        hidden_state_task,
        "student hidden (width 32) vs teacher hidden (width 48) through a learned projection; "
        "the student reads out with the projection and the teacher's frozen LM head, so "
        "matching hidden states matches distributions",
    ),
    Kind.ATTENTION: KindDemo(attention_task, "last-layer attention maps (2 heads each)"),
    Kind.RANKING: KindDemo(ranking_task, _CANDIDATES + "; ranked by the teacher, best first"),
    Kind.SCORED_RANKING: KindDemo(
        scored_ranking_task, _CANDIDATES + "; SFT on the best inside the loss"
    ),
    Kind.SPARSE_TOPK: KindDemo(
        sparse_topk_task,
        f"teacher top-{DEMO_K} log-probs (of V = 32) cached once with write_teacher_cache "
        "(float32, T_store = 1) and read back with TeacherCache; the teacher is not run "
        "during training",
    ),
    Kind.SPARSE_SAMPLED: KindDemo(
        sparse_sampled_task,
        f"{DEMO_SAMPLES} teacher draws per token (of V = 32, proposal = teacher) cached once "
        "as distinct ids with counts (write_teacher_cache mode='sampled'); the loss uses the "
        "weights TeacherCache reads back; the teacher is not run during training",
    ),
}


#: Demos of a training setting, each training the token-level loss given with ``--loss``.
SCENARIOS: dict[str, KindDemo] = {
    "speculative_kd": KindDemo(
        speculative_kd_task,
        "Speculative KD: every step the student proposes each response token and the teacher "
        f"resamples proposals outside its top-{SPECULATIVE_TOP_K}; the loss compares student and "
        "teacher logits on these interleaved sequences",
    ),
    "privileged_self_distillation": KindDemo(
        privileged_self_distillation_task,
        "on-policy self-distillation: the teacher is the student network given the reference "
        "response as a privileged prefix (no gradient through that pass), scored on the "
        "student's own samples; objective = loss + cross-entropy of the privileged pass on the "
        "reference (a network trained from scratch must learn to read the prefix); logged: the "
        "loss alone, against a teacher that sharpens as it learns to read the answer",
    ),
}
#: The token-level loss a scenario trains when ``--loss`` is not given.
DEFAULT_SCENARIO_LOSS = "forward_kl"


def resolve(name: str, loss: str | None = None) -> tuple[LossSpec, KindDemo]:
    """The spec to train and the demo that trains it: a registry loss, or a scenario + loss."""
    if name in SCENARIOS:
        chosen = loss or DEFAULT_SCENARIO_LOSS
        if chosen not in TOKEN_LEVEL_LOSSES:
            raise ValueError(
                f"scenario {name!r} trains a token-level loss, one of "
                f"{', '.join(TOKEN_LEVEL_LOSSES)}; got {chosen!r}"
            )
        return spec_of(chosen), SCENARIOS[name]
    if loss is not None:
        raise ValueError(
            f"--loss chooses the loss of a scenario ({', '.join(SCENARIOS)}); {name!r} is a loss"
        )
    spec = spec_of(name)
    return spec, BUILDERS[spec.kind]


def demo_note(name: str, loss: str | None = None) -> str:
    """What the demo of ``name`` feeds its loss: its kind's setting, then the spec's note."""
    spec, demo = resolve(name, loss)
    parts = [demo.note, f"loss = {spec.name}" if name in SCENARIOS else "", spec.note]
    if spec.with_sft:
        parts.append(f"logged loss = {spec.name} alone")
    return "; ".join(p for p in parts if p)


def build_task(
    name: str, cfg: DemoConfig, device: torch.device, seed: int, *, loss: str | None = None
) -> Task:
    """Seed everything, build teacher(s), corpus and student for ``name``; return its Task.

    ``name`` is a registry loss, or a scenario of :data:`SCENARIOS` training ``loss``.
    """
    spec, demo = resolve(name, loss)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    return demo.build(spec, cfg, device, gen)
