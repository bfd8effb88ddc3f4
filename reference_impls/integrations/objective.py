r"""The distillation objective of :class:`DistillationTrainer`, from model outputs to a loss.

Pure torch (no ``transformers``): given the student's and the teacher's outputs on one batch of
causal-LM inputs, compute :math:`\alpha\, \mathrm{CE} + (1 - \alpha)\, \mathrm{KD}` with the
shift of causal LMs: the logits at position :math:`t` predict token :math:`t + 1`, so the
logits ``[:, :-1]`` meet the targets ``labels[:, 1:]``, and a token counts where its target is
not ``-100``. Losses are looked up by name in :data:`reference_impls.REGISTRY`.

Kinds of loss, from the registry's kind of each loss:

* token-level (:data:`reference_impls.TOKEN_LEVEL_LOSSES`): teacher logits, or the lm heads'
  hidden states and weights through :func:`reference_impls.fused_linear_distill`;
* ``topk_*``: teacher log-probabilities read from a top-k teacher cache;
* sampled-cache losses (``sampled_kd_loss``): importance weights of sampled teacher ids,
  read from a sampled teacher cache;
* ``sft_loss``: cross-entropy on the labels only (sequence-level KD on teacher-written text);
* ``kl_regularized_pg_loss``: on-policy distillation by policy gradient, the teacher as the
  reference policy (reward 0 unless a reward function is given), per-token reverse-KL penalty;
* on-policy policy-gradient losses (``opd_policy_gradient_loss``): the completion tokens are
  the student's samples and the teacher's log-prob of each one sets its reward.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

import reference_impls
from reference_impls.registry import Kind as RegistryKind

Kind = Literal["token", "topk", "sampled", "sft", "policy_gradient", "on_policy"]
IGNORE_INDEX = -100
#: What the trainer builds for each kind of the registry (:class:`reference_impls.Kind`).
TRAINER_KINDS: dict[RegistryKind, Kind] = {
    RegistryKind.TOKEN_LEVEL: "token",
    RegistryKind.SPARSE_TOPK: "topk",
    RegistryKind.SEQUENCE: "sft",
    RegistryKind.POLICY_GRADIENT: "policy_gradient",
    RegistryKind.SPARSE_SAMPLED: "sampled",
    RegistryKind.ON_POLICY_PG: "on_policy",
}
#: The trainer kinds whose losses assume the student's own samples (``on_policy_ratio=1``).
ON_POLICY_KINDS: frozenset[Kind] = frozenset({"policy_gradient", "on_policy"})
#: The trainer kinds that read a teacher cache, and the cache mode each needs.
CACHE_MODES: dict[Kind, str] = {"topk": "topk", "sampled": "sampled"}


def loss_kind(name: str) -> Kind:
    """The kind of registry loss ``name``; ``ValueError`` if the trainer cannot feed it."""
    if name not in reference_impls.SPECS:
        raise ValueError(f"unknown loss {name!r}; see reference_impls.REGISTRY for the names")
    registry_kind = reference_impls.SPECS[name].kind
    if registry_kind in TRAINER_KINDS:
        return TRAINER_KINDS[registry_kind]
    fed = sorted(n for n, spec in reference_impls.SPECS.items() if spec.kind in TRAINER_KINDS)
    raise ValueError(
        f"loss {name!r} ({registry_kind.value}) needs inputs the DistillationTrainer does not "
        f"build (preference pairs, rankings, hidden features...); call "
        f"reference_impls.REGISTRY[{name!r}] in your own loop. The trainer takes: {', '.join(fed)}"
    )


#: Arguments the trainer fills in itself; ``loss_params`` may not set them.
_FILLED_BY_TRAINER = frozenset(
    {
        "student_logits", "teacher_logits", "mask", "temperature", "storage_temperature",
        "topk_ids", "topk_logprobs", "logps", "ref_logps", "rewards", "target_ids",
        "ignore_index", "ids", "weights", "sampled_ids", "teacher_logprobs", "old_logprobs",
    }
)  # fmt: skip


def check_params(name: str, params: Mapping[str, Any]) -> None:
    """``ValueError`` naming the loss and its parameters if ``params`` has one it does not take."""
    accepted = set(inspect.signature(reference_impls.REGISTRY[name]).parameters)
    allowed = sorted(accepted - _FILLED_BY_TRAINER)
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"loss {name} takes no parameter {key!r}; its parameters: "
                f"{', '.join(allowed) or 'none'}"
            )


@dataclass(frozen=True)
class Objective:
    """Settings of the objective: loss name and parameters, temperature, hard-label weight."""

    loss: str
    params: Mapping[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    alpha: float = 0.0
    chunk_size: int = 1024

    @property
    def kind(self) -> Kind:
        return loss_kind(self.loss)

    @property
    def fn(self) -> Callable[..., Tensor]:
        fn: Callable[..., Tensor] = reference_impls.REGISTRY[self.loss]
        return fn


@dataclass(frozen=True)
class Terms:
    """The training loss and its two logged parts (``kd`` is ``None`` for ``sft_loss``)."""

    loss: Tensor
    ce: Tensor
    kd: Tensor | None


def shift(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(targets, mask)``: ``labels[:, 1:]`` and where they count (``!= -100``)."""
    targets = labels[:, 1:]
    return targets, targets != IGNORE_INDEX


def _combine(obj: Objective, ce: Tensor, kd: Tensor) -> Terms:
    """alpha * CE + (1 - alpha) * KD; a term of weight 0 is detached (logged, no gradient)."""
    if obj.alpha == 0.0:
        return Terms(kd, ce.detach(), kd)
    if obj.alpha == 1.0:
        return Terms(ce, ce, kd.detach())
    return Terms(obj.alpha * ce + (1.0 - obj.alpha) * kd, ce, kd)


def from_logits(obj: Objective, student: Tensor, teacher: Tensor, labels: Tensor) -> Terms:
    """Token-level KD on full logits ``[B, L, V]`` (unshifted, as the models return them)."""
    targets, mask = shift(labels)
    s, t = student[:, :-1], teacher[:, :-1]
    kd = obj.fn(s, t, mask, temperature=obj.temperature, **obj.params)
    ce = reference_impls.REGISTRY["sft_loss"](s, targets)
    return _combine(obj, ce, kd)


def fused(
    obj: Objective,
    student_hidden: Tensor,
    student_head: torch.nn.Module,
    teacher_hidden: Tensor,
    teacher_head: torch.nn.Module,
    labels: Tensor,
) -> Terms:
    """Token-level KD from the last hidden states ``[B, L, H]`` and lm heads, chunk by chunk.

    Two calls of :func:`reference_impls.fused_linear_distill`, KD alone and CE alone (the CE
    call never builds teacher logits), so that both terms can be logged; each holds at most
    ``chunk_size × V`` logits at a time.
    """
    targets, _ = shift(labels)
    hs, ht = student_hidden[:, :-1], teacher_hidden[:, :-1]
    w_s, b_s = _weight_and_bias(student_head)
    w_t, b_t = _weight_and_bias(teacher_head)
    common: dict[str, Any] = {
        "labels": targets,
        "chunk_size": obj.chunk_size,
        "student_bias": b_s,
        "teacher_bias": b_t,
    }
    fld = reference_impls.fused_linear_distill
    with torch.set_grad_enabled(torch.is_grad_enabled() and obj.alpha < 1.0):
        kd = fld(
            hs, w_s, ht, w_t, loss=obj.loss, temperature=obj.temperature, **common, **obj.params
        )
    with torch.set_grad_enabled(torch.is_grad_enabled() and obj.alpha > 0.0):
        ce = fld(hs, w_s, ht, w_t, loss=obj.loss, hard_weight=1.0, **common)
    return _combine(obj, ce, kd)


def _weight_and_bias(head: torch.nn.Module) -> tuple[Tensor, Tensor | None]:
    """An lm head's ``weight`` ``[V, H]`` and ``bias`` (or ``None``)."""
    weight, bias = getattr(head, "weight", None), getattr(head, "bias", None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"fused=True needs an lm head with a weight tensor, got {type(head)}")
    return weight, bias if isinstance(bias, Tensor) else None


def from_cache(
    obj: Objective,
    student: Tensor,
    ids: Tensor,
    values: Tensor,
    cache_mask: Tensor,
    labels: Tensor,
    **cache_params: float,
) -> Terms:
    """A cache loss on cached teacher rows ``[B, Lc, w]`` (row t predicts token t + 1): top-k
    log-probs (with ``storage_temperature``) or sampled ids' importance weights."""
    targets, mask = shift(labels)
    length = student.shape[1] - 1
    ids, values, cmask = (_fit(x, length) for x in (ids, values, cache_mask))
    s = student[:, :-1]
    kd = obj.fn(
        s, ids, values, mask & cmask, temperature=obj.temperature, **cache_params, **obj.params
    )
    ce = reference_impls.REGISTRY["sft_loss"](s, targets)
    return _combine(obj, ce, kd)


def _fit(x: Tensor, length: int) -> Tensor:
    """``x[:, :length]``, padded with zeros / False if the cache rows are shorter."""
    if x.shape[1] >= length:
        return x[:, :length]
    pad = x.new_zeros((x.shape[0], length - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def sft(student: Tensor, labels: Tensor) -> Terms:
    """Sequence-level KD: cross-entropy on the (teacher-written) labels; no teacher needed."""
    targets, _ = shift(labels)
    ce = reference_impls.REGISTRY["sft_loss"](student[:, :-1], targets)
    return Terms(ce, ce, None)


def token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """Log-probabilities ``[B, T]`` of the target tokens (ignored targets read token 0)."""
    safe = targets.masked_fill(targets == IGNORE_INDEX, 0).long()
    logps = torch.log_softmax(logits.float(), dim=-1)
    return logps.gather(-1, safe.unsqueeze(-1)).squeeze(-1)


def policy_gradient(
    obj: Objective, student: Tensor, teacher: Tensor, labels: Tensor, rewards: Tensor | None
) -> Terms:
    """On-policy distillation by REINFORCE with the teacher as the KL reference.

    ``kl_regularized_pg_loss(log q, log p, r, mask, kl_coef=...)`` on the completion tokens; with
    reward 0 its gradient is an unbiased estimate of :math:`\\nabla \\mathrm{KL}(q \\| p)` over
    whole sequences when the completions are the student's own samples (``on_policy_ratio=1``).
    """
    targets, mask = shift(labels)
    logps = token_logps(student[:, :-1], targets)
    ref = token_logps(teacher[:, :-1], targets).detach()
    r = rewards if rewards is not None else logps.new_zeros(logps.shape[0])
    kl_coef = float(obj.params.get("kl_coef", 1.0))
    kd = obj.fn(logps, ref, r, mask, kl_coef=kl_coef)
    ce = reference_impls.REGISTRY["sft_loss"](student[:, :-1], targets)
    return _combine(obj, ce, kd)


def on_policy(obj: Objective, student: Tensor, teacher: Tensor, labels: Tensor) -> Terms:
    """On-policy distillation: reward :math:`-(\\log q - \\log p)` per completion token.

    ``fn(student logits, completion ids, teacher log-probs of them, mask, **params)``; the
    completions should be the student's own samples (``on_policy_ratio=1``), as the loss's
    policy-gradient estimate assumes.
    """
    targets, mask = shift(labels)
    safe = targets.masked_fill(~mask, 0)
    logp = token_logps(teacher[:, :-1], targets).detach()
    kd = obj.fn(student[:, :-1], safe, logp, mask, **obj.params)
    ce = reference_impls.REGISTRY["sft_loss"](student[:, :-1], targets)
    return _combine(obj, ce, kd)
