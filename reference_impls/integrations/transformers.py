r"""``DistillationTrainer``: a ``transformers.Trainer`` that distils a teacher into the student.

The training loss of a batch is :math:`\alpha\, \mathrm{CE}(\text{labels}) + (1 - \alpha)\,
\mathrm{KD}` with any loss of :data:`reference_impls.REGISTRY` the trainer can feed (see
:mod:`reference_impls.integrations.objective`), both terms token means over the counted
targets of the batch (``labels[:, 1:] != -100``); ``kd`` and ``ce`` are logged beside ``loss``.
The teacher is a frozen causal LM sharing the student's tokenizer (any size), or a top-k
teacher cache. ``on_policy_ratio`` (GKD's :math:`\lambda`) is the fraction of training batches
whose completions the student samples itself before the loss is taken. Everything else (the
optimiser, gradient accumulation, ``accelerate launch`` with DDP) is the ``Trainer``'s own.

Requires the ``hf`` extra: ``pip install 'kd-atlas[hf]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

import reference_impls
import reference_impls.integrations.objective as _obj
from reference_impls.integrations.batches import (
    DistillationCollator,
    completion_batch,
    split_prompts,
)
from reference_impls.integrations.schedules import ScheduledParams

try:
    from transformers import PreTrainedModel, Trainer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    if "partially initialized" in str(exc):  # this file was found as `transformers`
        raise ImportError(
            "reference_impls/integrations/ is on sys.path, so its transformers.py shadows the "
            "transformers library: run scripts of that directory as modules "
            "(python -m reference_impls.integrations.example), not as files"
        ) from exc
    raise ImportError(
        "reference_impls.integrations.transformers needs Hugging Face transformers and "
        "accelerate: pip install 'kd-atlas[hf]'"
    ) from exc

__all__ = ["DistillationCollator", "DistillationTrainer"]

#: ``reward_fn(input_ids [B, L], labels [B, L]) -> rewards [B]`` for ``kl_regularized_pg_loss``.
RewardFn = Callable[[Tensor, Tensor], Tensor]


class DistillationTrainer(Trainer):
    """Distil ``teacher_model`` (or ``teacher_cache``) into ``model`` with a KD Atlas loss.

    Batches hold ``input_ids``, ``attention_mask`` and ``labels`` aligned with ``input_ids``
    (-100 on the prompt and the padding), as :class:`DistillationCollator` builds them, plus
    ``cache_index`` (the dataset row of each sequence) when a teacher cache is used.

    Arguments beyond ``transformers.Trainer``'s:

    * ``teacher_model``: a causal LM with the student's vocabulary, frozen (eval mode, no grad);
    * ``teacher_cache``: a :class:`reference_impls.teacher_cache.TeacherCache` instead: a
      top-k cache with a ``topk_*`` loss (``loss="forward_kl"`` is read as
      ``"topk_forward_kl"``), or a sampled cache with ``loss="sampled_kd_loss"``;
    * ``loss``, ``loss_params``: a registry name and its parameters (``{"beta": 0.5}``...);
    * ``temperature``: :math:`T` of the KD term; ``alpha``: the weight of the hard-label CE;
    * ``fused``: compute a token-level loss from the last hidden states and the lm heads'
      weights through :func:`reference_impls.fused_linear_distill` (``chunk_size`` rows at a
      time) instead of the full ``[B, L, V]`` logits;
    * ``on_policy_ratio``: fraction of batches whose completions the student samples
      (``do_sample=True`` with ``max_new_tokens``, ``generation_temperature`` and any further
      ``generation_kwargs`` such as ``top_k``/``top_p``); the prompt of a row is everything
      before its first counted label; the coin is drawn from a generator seeded with
      ``args.seed``, so every process of a distributed run makes the same choice;
    * ``follow_schedule``: a loss whose registry entry has a ``schedule`` (``taid_loss``'s
      adaptive ``t``) follows it, advanced after every optimiser step with that step's KD
      term (averaged over micro-batches and processes); the scheduled keys override
      ``loss_params``. ``False`` keeps ``loss_params`` fixed;
    * ``reward_fn``: rewards of whole sequences for ``kl_regularized_pg_loss`` (default 0);
      ``opd_policy_gradient_loss`` needs none: the teacher's log-probs set its per-token reward.

    Normalisation: the optimiser step follows the token mean over the whole global batch (all
    accumulation micro-batches on all processes), however it is split; on-policy batches, whose
    token counts are only known after sampling, are averaged per micro-batch instead.
    """

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        teacher_model: PreTrainedModel | nn.Module | None = None,
        *trainer_args: Any,
        teacher_cache: Any = None,
        loss: str = "forward_kl",
        loss_params: Mapping[str, Any] | None = None,
        temperature: float = 1.0,
        alpha: float = 0.0,
        fused: bool = False,
        chunk_size: int = 1024,
        on_policy_ratio: float = 0.0,
        max_new_tokens: int = 32,
        generation_temperature: float = 1.0,
        generation_kwargs: Mapping[str, Any] | None = None,
        reward_fn: RewardFn | None = None,
        follow_schedule: bool = True,
        **trainer_kwargs: Any,
    ) -> None:
        topk_cache = teacher_cache is not None and getattr(teacher_cache, "mode", "topk") == "topk"
        if topk_cache and f"topk_{loss}" in reference_impls.REGISTRY:
            loss = f"topk_{loss}"  # forward_kl on a top-k cache is topk_forward_kl
        self.kd_objective = _obj.Objective(
            loss=loss,
            params=dict(loss_params or {}),
            temperature=temperature,
            alpha=alpha,
            chunk_size=chunk_size,
        )
        kind = self.kd_objective.kind  # raises for a loss the trainer cannot feed
        _obj.check_params(loss, self.kd_objective.params)
        _check_settings(kind, teacher_model, teacher_cache, fused, alpha, on_policy_ratio)
        if "data_collator" not in trainer_kwargs and len(trainer_args) < 2:
            trainer_kwargs["data_collator"] = DistillationCollator(_pad_id(model, trainer_kwargs))
        super().__init__(model, *trainer_args, **trainer_kwargs)
        # compute_loss scales for gradient accumulation itself (see _scale_for_accumulation)
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = True
        self.teacher = self._prepare_teacher(teacher_model)
        self.teacher_cache = teacher_cache
        self.fused = fused
        self.on_policy_ratio = on_policy_ratio
        self.generation_kwargs: dict[str, Any] = {
            "do_sample": True,
            "max_new_tokens": max_new_tokens,
            "temperature": generation_temperature,
            **(generation_kwargs or {}),
        }
        self.reward_fn = reward_fn
        self._coin = torch.Generator().manual_seed(self.args.seed)
        self._logged: dict[str, list[float]] = {}
        factory = reference_impls.SPECS[loss].schedule
        self._scheduled = ScheduledParams(self, factory) if factory and follow_schedule else None
        if self._scheduled is not None:
            self.add_callback(self._scheduled)

    def _prepare_teacher(self, teacher: nn.Module | None) -> nn.Module | None:
        """Freeze the teacher and place it like the student (sharded under DeepSpeed/FSDP).

        Under DeepSpeed or FSDP the teacher is wrapped with TRL's ``prepare_deepspeed`` /
        ``prepare_fsdp`` (the ``hf`` extra installs TRL); not run in this project's CI.
        """
        if teacher is None:
            return None
        teacher.eval()
        teacher.requires_grad_(False)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            from trl.models.utils import prepare_deepspeed, prepare_fsdp

            prepare = prepare_deepspeed if self.is_deepspeed_enabled else prepare_fsdp
            return cast(nn.Module, prepare(teacher, self.accelerator))
        return teacher.to(self.args.device)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        assert self._signature_columns is not None
        self._signature_columns += ["labels", "prompt_length", "cache_index"]  # for the collator

    # -- the loss --------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """The distillation loss of one batch; on-policy batches are resampled first."""
        resampled = False
        if model.training and self.on_policy_ratio > 0.0 and self._draw_on_policy():
            inputs, resampled = self.sample_completions(model, inputs), True
        terms = self.distillation_terms(model, inputs)
        self._record(terms, train=model.training)
        if model.training and self._scheduled is not None and terms.kd is not None:
            self._scheduled.record(float(terms.kd.detach()))
        loss = self._scale_for_accumulation(
            terms.loss, inputs["labels"], num_items_in_batch, resampled
        )
        return (loss, {"kd": terms.kd, "ce": terms.ce}) if return_outputs else loss

    def _scale_for_accumulation(
        self, loss: Tensor, labels: Tensor, num_items: Tensor | int | None, resampled: bool
    ) -> Tensor:
        """Turn this micro-batch's token mean into its share of the accumulated batch's mean.

        With ``num_items`` (the counted targets of all micro-batches of the optimiser step,
        summed over the processes when ``average_tokens_across_devices``) the result is
        ``mean * n_local / num_items``, times the number of processes whose gradients DDP
        averages: the step then follows the token mean of the whole global batch, whatever the
        split. Resampled (on-policy) batches, whose counts ``num_items`` does not know, and the
        sequence-mean ``kl_regularized_pg_loss`` are divided by the accumulation steps instead.
        """
        if num_items is None or resampled or self.kd_objective.kind == "policy_gradient":
            return loss / getattr(self, "current_gradient_accumulation_steps", 1)
        n_local = (labels[:, 1:] != _obj.IGNORE_INDEX).sum()
        scale = n_local / torch.as_tensor(num_items, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            scale = scale * self.args.world_size
        return loss * scale.to(loss.dtype)

    def _get_num_items_in_batch(
        self, batch_samples: list[Any], device: torch.device
    ) -> Tensor | int | None:
        """Counted targets (``labels[:, 1:] != -100``) of an optimiser step's micro-batches.

        Summed over the processes when ``args.average_tokens_across_devices`` (the default).
        """
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        count = sum(
            (b["labels"][:, 1:] != _obj.IGNORE_INDEX).sum().to(device) for b in batch_samples
        )
        total = torch.as_tensor(count, device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return total

    def distillation_terms(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> _obj.Terms:
        """Loss, CE and KD of a batch as it stands (no resampling): the testable core."""
        obj, labels = self.kd_objective, inputs["labels"]
        model_inputs = {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
        }
        kind = obj.kind
        if kind == "token" and self.fused:
            out = model(**model_inputs, output_hidden_states=True, logits_to_keep=1)
            with torch.no_grad():
                t_out = self._teacher()(**model_inputs, output_hidden_states=True, logits_to_keep=1)
            return _obj.fused(
                obj,
                out.hidden_states[-1],
                self._head(model),
                t_out.hidden_states[-1],
                self._head(self._teacher()),
                labels,
            )
        logits = model(**model_inputs).logits
        if kind == "sft":
            return _obj.sft(logits, labels)
        if kind in _obj.CACHE_MODES:
            ids, values, cmask = self.teacher_cache.get_batch(inputs["cache_index"].tolist())
            ids, values, cmask = (x.to(logits.device) for x in (ids, values, cmask))
            extra = {"storage_temperature": self.teacher_cache.storage_temperature}
            return _obj.from_cache(
                obj, logits, ids, values, cmask, labels, **(extra if kind == "topk" else {})
            )
        with torch.no_grad():
            t_logits = self._teacher()(**model_inputs).logits
        if kind == "policy_gradient":
            rewards = None
            if self.reward_fn is not None:
                rewards = self.reward_fn(inputs["input_ids"], labels).to(logits.device)
            return _obj.policy_gradient(obj, logits, t_logits, labels, rewards)
        if kind == "on_policy":
            return _obj.on_policy(obj, logits, t_logits, labels)
        return _obj.from_logits(obj, logits, t_logits, labels)

    def _teacher(self) -> nn.Module:
        if self.teacher is None:
            raise ValueError(f"loss {self.kd_objective.loss!r} needs a teacher_model")
        return self.teacher

    def _head(self, model: nn.Module) -> nn.Module:
        head = self.accelerator.unwrap_model(model).get_output_embeddings()
        if not isinstance(head, nn.Module) or not isinstance(getattr(head, "weight", None), Tensor):
            raise ValueError("fused=True needs a model whose get_output_embeddings() is a Linear")
        return head

    # -- on-policy batches -----------------------------------------------------------------

    def _draw_on_policy(self) -> bool:
        return bool(torch.rand((), generator=self._coin) < self.on_policy_ratio)

    def sample_completions(
        self, model: nn.Module, inputs: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Replace each row's completion by one the student samples after the row's prompt."""
        pad_id = _collator_pad_id(self.data_collator)
        prompts, prompt_mask = split_prompts(
            inputs["input_ids"], inputs["attention_mask"], inputs["labels"], pad_id
        )
        with self._unwrapped_for_generation(model) as student:
            was_training = student.training
            student.eval()
            try:
                with torch.no_grad():
                    generated = student.generate(
                        input_ids=prompts,
                        attention_mask=prompt_mask,
                        pad_token_id=pad_id,
                        **self.generation_kwargs,
                    )
            finally:
                student.train(was_training)
        eos = student.generation_config.eos_token_id
        eos_ids: Sequence[int] = [eos] if isinstance(eos, int) else list(eos or [])
        batch = completion_batch(
            prompts, prompt_mask, generated[:, prompts.shape[1] :], eos_ids, pad_id
        )
        extra = {k: v for k, v in inputs.items() if k not in batch and k != "cache_index"}
        return {**extra, **batch}

    @contextlib.contextmanager
    def _unwrapped_for_generation(self, model: nn.Module) -> Iterator[Any]:
        """The bare student; under DeepSpeed ZeRO-3/FSDP, TRL gathers its shards (not run here)."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            from trl.models.utils import unwrap_model_for_generation

            with unwrap_model_for_generation(model, self.accelerator) as unwrapped:
                yield unwrapped
        else:
            yield self.accelerator.unwrap_model(model)

    # -- logging and evaluation ------------------------------------------------------------

    def _record(self, terms: _obj.Terms, train: bool) -> None:
        prefix = "" if train else "eval_"
        for name, value in (("kd", terms.kd), ("ce", terms.ce)):
            if value is not None:
                self._logged.setdefault(prefix + name, []).append(float(value.detach()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean KD and CE terms since the last log (``eval_`` ones after evaluation)."""
        evaluating = any(k.startswith("eval_") for k in logs)
        for key in [k for k in self._logged if k.startswith("eval_") == evaluating]:
            values = self._logged.pop(key)
            logs[key] = sum(values) / len(values)
        super().log(logs, start_time)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Evaluation: the distillation loss of the batch (no predictions are gathered)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            terms = self.distillation_terms(model, inputs)
        self._record(terms, train=False)
        return terms.loss.detach(), None, None


def _check_settings(
    kind: str,
    teacher_model: nn.Module | None,
    teacher_cache: Any,
    fused: bool,
    alpha: float,
    on_policy_ratio: float,
) -> None:
    """Reject settings that cannot work, before the Trainer starts, in the trainer's words."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the hard-label weight) must lie in [0, 1], got {alpha}")
    if not 0.0 <= on_policy_ratio <= 1.0:
        raise ValueError(f"on_policy_ratio must lie in [0, 1], got {on_policy_ratio}")
    if teacher_model is not None and teacher_cache is not None:
        raise ValueError("pass teacher_model or teacher_cache, not both")
    if kind in ("token", "policy_gradient", "on_policy") and teacher_model is None:
        raise ValueError(f"a {kind} loss needs teacher_model (a causal LM sharing the tokenizer)")
    if kind in _obj.CACHE_MODES:
        mode = getattr(teacher_cache, "mode", "topk")
        if teacher_cache is None:
            raise ValueError(
                f"a {kind} loss needs teacher_cache (reference_impls.teacher_cache) written "
                f"with mode={_obj.CACHE_MODES[kind]!r}"
            )
        if mode != _obj.CACHE_MODES[kind]:
            raise ValueError(
                f"a {kind} loss reads a {_obj.CACHE_MODES[kind]!r} teacher cache; this one was "
                f"written with mode={mode!r}"
            )
        if on_policy_ratio > 0.0:
            raise ValueError(
                "on-policy batches need a live teacher: a teacher cache only covers "
                "the dataset's own sequences"
            )
    if fused and kind != "token":
        raise ValueError(f"fused=True works with the token-level losses, not a {kind} loss")


def _pad_id(model: nn.Module | None, trainer_kwargs: Mapping[str, Any]) -> int:
    """The pad id: the tokenizer's, else the model config's, else its eos id, else 0."""
    tokenizer = trainer_kwargs.get("processing_class")
    for source in (tokenizer, getattr(model, "config", None)):
        pad = getattr(source, "pad_token_id", None)
        if isinstance(pad, int):
            return pad
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    return eos if isinstance(eos, int) else 0


def _collator_pad_id(collator: Any) -> int:
    pad = getattr(collator, "pad_token_id", None)
    if not isinstance(pad, int):
        raise ValueError("on-policy sampling needs a DistillationCollator (it knows the pad id)")
    return pad
