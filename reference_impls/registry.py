r"""The registry: one frozen :class:`LossSpec` per loss, the single list everything else reads.

``REGISTRY`` (name -> function), ``TOKEN_LEVEL_LOSSES``, the demos
(``python -m reference_impls.demos <loss>``), the loss zoo, the fused loss and ``kbtool run``
are all derived from :data:`LOSSES`. Each spec gives the loss's :class:`Kind` (its call
contract: which tensors it takes), the hyperparameters the demos and the zoo pass, the demo's
settings, and a one-line note. Every kind has exactly one demo builder
(:mod:`reference_impls.demos.tasks`), so no code anywhere tests a loss by name.

**How to add a loss.**

1. Write the function in its family file (``reference_impls/<family>.py``): formula in the
   docstring, a few lines of torch, helpers from :mod:`reference_impls.tokens`. Follow the
   contract of its kind (below); hyperparameters are keyword-only.
2. Add one line to :data:`LOSSES` below (and, for a new family file, its
   ``import reference_impls.<family> as <family>`` at the top):
   ``LossSpec(family.my_loss, Kind.TOKEN_LEVEL, "what the demo shows", params={...})``.
3. Add its method node to ``taxonomy/methods/methods.yaml`` with
   ``loss: reference_impls.my_loss``.

Nothing else: the package exports it as ``reference_impls.my_loss``, the demo of its kind
trains it, a token-level loss joins the zoo and the fused loss, and the site shows its code.
This module depends on torch alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from torch import Tensor

import reference_impls.abkd as abkd
import reference_impls.akl as akl
import reference_impls.bitdistiller as bitdistiller
import reference_impls.jsd as jsd
import reference_impls.kl as kl
import reference_impls.minillm as minillm
import reference_impls.multi_teacher as multi_teacher
import reference_impls.on_policy as on_policy
import reference_impls.policy_gradient as policy_gradient
import reference_impls.preference as preference
import reference_impls.ranking as ranking
import reference_impls.sft as sft
import reference_impls.similarity as similarity
import reference_impls.skew_kl as skew_kl
import reference_impls.topk as topk
import reference_impls.tvd as tvd
import reference_impls.uld as uld
from reference_impls.tokens import TokenLevelLoss


class Kind(StrEnum):
    """A loss's call contract: what it compares, hence which demo builder trains it."""

    #: ``fn(student_logits, teacher_logits, mask=None, *, temperature=1.0, **params)``
    TOKEN_LEVEL = "token-level"
    #: ``fn(student_logits, [teacher_logits, ...], mask=None, **params)``
    MULTI_TEACHER = "multi-teacher"
    #: ``fn(student_logits, target_ids, **params)``: cross-entropy on teacher outputs
    SEQUENCE = "sequence"
    #: ``fn(label_logits, label_ids, rationale_logits, rationale_ids, **params)``
    RATIONALE = "rationale"
    #: ``fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, **params)`` log-probs
    PAIRWISE_PREFERENCE = "pairwise preference"
    #: ``fn(chosen_rewards, rejected_rewards, **params)``: trains a reward model
    REWARD_MODEL = "reward model"
    #: ``fn(logps, ref_logps, rewards, mask, **params)`` on the student's own samples
    POLICY_GRADIENT = "policy gradient"
    #: ``fn(student_logits, teacher_logits, sampled_ids, mask, **params)`` on student samples
    ON_POLICY = "on-policy"
    #: ``fn(student_logits, sampled_ids, teacher_logprobs, mask, **params)`` on student samples
    ON_POLICY_PG = "on-policy policy gradient"
    #: ``fn(student_logits, teacher_logits, student_mask, teacher_mask, **params)``
    CROSS_TOKENIZER = "cross-tokenizer"
    #: ``fn(student_hidden, teacher_hidden, mask=None, *, projection=None, **params)``
    HIDDEN_STATE = "hidden-state"
    #: ``fn(student_attn, teacher_attn, mask=None, **params)``
    ATTENTION = "attention"
    #: ``fn(seq_logps_ranked, **params)``: candidates ordered best first
    RANKING = "ranking"
    #: ``fn(seq_logps, teacher_scores, *, best_nll=None, **params)``
    SCORED_RANKING = "scored ranking"
    #: ``fn(student_logits, topk_ids, topk_logprobs, mask=None, **params)``
    SPARSE_TOPK = "sparse top-k"
    #: ``fn(student_logits, ids, weights, mask=None, **params)``: sampled teacher targets
    SPARSE_SAMPLED = "sparse sampled"
    #: ``fn(student_logits_t, teacher_logits_t, mask_t, student_logits_s, teacher_logits_s,
    #: mask_s, **params)``: logits on teacher responses, then on the student's own samples
    CONTRASTIVE = "contrastive"


#: Parameters measured on the training data: ``(teacher_logits, target_ids) -> params``.
FitParams = Callable[[Tensor, Tensor], dict[str, Any]]
#: Parameters that change during training, stateful: ``(step, loss of step - 1 or None) ->
#: params`` for optimiser step ``step`` (0-based), called once per step in order.
Schedule = Callable[[int, float | None], Mapping[str, Any]]
#: Builds a fresh :data:`Schedule` for a run of ``total_steps`` optimiser steps.
ScheduleFactory = Callable[[int], Schedule]


@dataclass(frozen=True)
class LossSpec:
    """One loss: its function, kind, the parameters its demo uses and a one-line note.

    ``params`` are the hyperparameters the demos and the zoo pass (empty: the function's
    defaults); ``demo`` overrides fields of the demos' ``DemoConfig`` (e.g. ``lr``);
    ``with_sft`` adds cross-entropy on teacher samples to the objective, as the loss's paper
    does (the logged value stays the loss itself); ``fit_params`` measures parameters on the
    training data (teacher logits, target ids) before training; ``schedule`` builds, per run,
    the parameters that change during training (they override ``params`` at every step; the
    demos and the zoo feed it the logged loss, see :class:`reference_impls.demos.StepParams`).
    """

    function: Callable[..., Tensor]
    kind: Kind
    note: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    demo: Mapping[str, Any] = field(default_factory=dict)
    with_sft: bool = False
    fit_params: FitParams | None = None
    schedule: ScheduleFactory | None = None

    @property
    def name(self) -> str:
        """The registry name: the function's own name."""
        return self.function.__name__


def _gamma_from_teacher(teacher_logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """BitDistiller's gamma: the teacher's confidence on the training targets."""
    return {"gamma": bitdistiller.teacher_confidence(teacher_logits, labels)}


def _taid_schedule(total_steps: int) -> Schedule:
    """TAID's adaptive t from t_start = 0.4 (the official default) with the official update."""
    return kl.TAIDSchedule(0.4, total_steps=total_steps)


_TK, _HS = Kind.TOKEN_LEVEL, Kind.HIDDEN_STATE

#: Every loss of the package, one entry each (the order is the order of tables and the zoo).
LOSSES: tuple[LossSpec, ...] = (
    LossSpec(kl.forward_kl, _TK),
    LossSpec(kl.reverse_kl, _TK),
    LossSpec(kl.soft_cross_entropy, _TK),
    LossSpec(jsd.js_divergence, _TK),
    LossSpec(
        jsd.generalized_jsd,
        _TK,
        "beta = 0.9 (near reverse KL; 0.5 is js_divergence)",
        params={"beta": 0.9},
    ),
    LossSpec(skew_kl.skew_forward_kl, _TK),
    LossSpec(skew_kl.skew_reverse_kl, _TK),
    LossSpec(tvd.total_variation, _TK),
    LossSpec(akl.adaptive_kl, _TK),
    LossSpec(
        bitdistiller.confidence_aware_kl,
        _TK,
        "gamma = teacher confidence on the training set",
        fit_params=_gamma_from_teacher,
    ),
    LossSpec(kl.taid_loss, _TK, "t from 0.4 by TAIDSchedule", {"t": 0.4}, schedule=_taid_schedule),
    LossSpec(abkd.ab_divergence, _TK, "alpha, beta = 0.2, 0.7", {"alpha": 0.2, "beta": 0.7}),
    LossSpec(multi_teacher.multi_teacher_kl, Kind.MULTI_TEACHER),
    LossSpec(sft.sft_loss, Kind.SEQUENCE),
    LossSpec(sft.rationale_sft_loss, Kind.RATIONALE),
    LossSpec(
        preference.dpo_loss,
        Kind.PAIRWISE_PREFERENCE,
        "beta = 0.1 (trained much longer, DPO over-optimises and the divergence climbs again)",
        params={"beta": 0.1},
        demo={"lr": 1e-3, "steps": 100},
    ),
    LossSpec(preference.bradley_terry_loss, Kind.REWARD_MODEL),
    LossSpec(
        policy_gradient.kl_regularized_pg_loss,
        Kind.POLICY_GRADIENT,
        "kl_coef = 1",
        params={"kl_coef": 1.0},
        demo={"lr": 2e-3, "steps": 300},
    ),
    LossSpec(minillm.minillm_loss, Kind.ON_POLICY),
    LossSpec(on_policy.opd_policy_gradient_loss, Kind.ON_POLICY_PG),
    LossSpec(skew_kl.distillm2_loss, Kind.CONTRASTIVE),
    LossSpec(
        uld.uld_loss,
        Kind.CROSS_TOKENIZER,
        "objective = ULD + cross-entropy as in the paper",
        with_sft=True,
    ),
    LossSpec(similarity.hidden_mse, _HS),
    LossSpec(similarity.hidden_l1, _HS),
    LossSpec(similarity.hidden_cosine, _HS),
    LossSpec(similarity.feature_cross_entropy, _HS),
    LossSpec(
        similarity.mmd,
        _HS,
        "MMD between the sets of hidden states (token order ignored), so as in NST objective = "
        "MMD + cross-entropy",
        with_sft=True,
    ),
    LossSpec(
        similarity.attention_kl,
        Kind.ATTENTION,
        "objective = attention KL + cross-entropy (attention alone carries no output distribution)",
        with_sft=True,
    ),
    LossSpec(ranking.rrhf_loss, Kind.SCORED_RANKING),
    LossSpec(
        ranking.pro_loss,
        Kind.RANKING,
        "objective = PRO + SFT on the best candidate as in the paper (PRO alone pushes scores "
        "apart without bound)",
        with_sft=True,
    ),
    LossSpec(topk.topk_forward_kl, Kind.SPARSE_TOPK),
    LossSpec(topk.topk_reverse_kl, Kind.SPARSE_TOPK),
    LossSpec(topk.topk_generalized_jsd, Kind.SPARSE_TOPK),
    LossSpec(topk.sampled_kd_loss, Kind.SPARSE_SAMPLED),
)

#: Specs by name.
SPECS: dict[str, LossSpec] = {s.name: s for s in LOSSES}

#: Every loss by name; method nodes point here through their ``loss`` field.
REGISTRY: dict[str, Callable[..., Tensor]] = {s.name: s.function for s in LOSSES}

#: Losses that follow the token-level contract (:class:`reference_impls.tokens.TokenLevelLoss`).
TOKEN_LEVEL_LOSSES: tuple[str, ...] = tuple(s.name for s in LOSSES if s.kind is Kind.TOKEN_LEVEL)


def spec_of(name: str) -> LossSpec:
    """The spec of the loss ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in SPECS:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(SPECS)}")
    return SPECS[name]


def token_level_loss(name: str) -> TokenLevelLoss:
    """The token-level loss ``name``, typed by its contract; ``ValueError`` for another kind."""
    if name not in TOKEN_LEVEL_LOSSES:
        raise ValueError(
            f"loss must be a token-level loss, one of {', '.join(TOKEN_LEVEL_LOSSES)}; got {name!r}"
        )
    return cast(TokenLevelLoss, SPECS[name].function)
