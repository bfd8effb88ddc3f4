"""Tiny Hugging Face models, tokenizer and data built locally, and a few-step distillation run.

Everything here is made from configs with fixed seeds (no download): a word-level tokenizer of
``VOCAB`` words, a teacher and a smaller student (``LlamaForCausalLM`` or ``Qwen2ForCausalLM``,
2 layers) and a toy task of prompt + completion sequences. :func:`run_tiny_hf_demo` trains the
student through :class:`DistillationTrainer` and reports KL(teacher || student) on held-out
batches before and after; ``python -m reference_impls.integrations`` and the future
``kbtool run <method> --hf`` call it. Requires the ``hf`` extra.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor

import reference_impls
from reference_impls.integrations.batches import DistillationCollator
from reference_impls.integrations.objective import CACHE_MODES, ON_POLICY_KINDS, loss_kind

try:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedModel,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
        TrainingArguments,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "reference_impls.integrations.tiny needs transformers: pip install 'kd-atlas[hf]'"
    ) from exc

VOCAB = 512
SPECIAL = ("[PAD]", "[UNK]", "[EOS]")
PROMPT_LEN, COMPLETION_LEN = 4, 8
#: The toy sequences use only this many words, so a few steps cover their contexts.
DATA_WORDS = 32
Family = Literal["llama", "qwen2"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer of ``VOCAB`` words: ``[PAD] [UNK] [EOS] w3 ... w511``."""
    words = [*SPECIAL, *(f"w{i}" for i in range(len(SPECIAL), VOCAB))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer: PreTrainedTokenizerFast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    return tokenizer


def tiny_causal_lm(
    family: Family = "llama", *, hidden: int = 64, layers: int = 2, seed: int = 0
) -> PreTrainedModel:
    """A causal LM over the tiny vocabulary, initialised from ``seed`` (float32, CPU)."""
    common: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "bos_token_id": None,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    }
    torch.manual_seed(seed)
    if family == "llama":
        model: PreTrainedModel = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        raise ValueError(f"family must be 'llama' or 'qwen2', got {family!r}")
    return model


def tiny_teacher(family: Family = "llama", seed: int = 1) -> PreTrainedModel:
    """A wider teacher (hidden 96) with a sharpened lm head: peaked, learnable next-token laws."""
    teacher = tiny_causal_lm(family, hidden=96, seed=seed)
    head = teacher.get_output_embeddings()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        head.weight.mul_(10.0)
    teacher.train(False)
    return teacher


def tiny_dataset(n: int, seed: int, *, ragged: bool = False) -> list[dict[str, Any]]:
    """``n`` sequences of ``PROMPT_LEN`` random words then ``COMPLETION_LEN`` completion words.

    ``ragged=True`` cuts each completion to a random length from 1 to ``COMPLETION_LEN``, so
    batches get padding and their rows count different numbers of tokens.
    """
    g = torch.Generator().manual_seed(seed)
    words = (len(SPECIAL), len(SPECIAL) + DATA_WORDS)
    ids = torch.randint(*words, (n, PROMPT_LEN + COMPLETION_LEN), generator=g)
    keep = torch.randint(1, COMPLETION_LEN + 1, (n,), generator=g) if ragged else None
    rows = [
        row[: PROMPT_LEN + int(keep[i])] if keep is not None else row
        for i, row in enumerate(ids.tolist())
    ]
    tokenizer = tiny_tokenizer()
    encoded = tokenizer([" ".join(f"w{i}" for i in row) for row in rows])["input_ids"]
    return [
        {"input_ids": row, "prompt_length": PROMPT_LEN, "cache_index": i}
        for i, row in enumerate(encoded)
    ]


def teacher_written(teacher: PreTrainedModel, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples with their completions replaced by the teacher's samples (seeded)."""
    prompts = torch.tensor([ex["input_ids"][:PROMPT_LEN] for ex in data])
    torch.manual_seed(0)
    generate = cast(Callable[..., Tensor], teacher.generate)
    with torch.no_grad():
        out = generate(
            input_ids=prompts,
            attention_mask=torch.ones_like(prompts),
            do_sample=True,
            max_new_tokens=COMPLETION_LEN,
            min_new_tokens=COMPLETION_LEN,  # equal lengths: no padding in the toy batches
            pad_token_id=0,
        )
    return [{**ex, "input_ids": row.tolist()} for ex, row in zip(data, out, strict=True)]


def heldout_kl(
    student: torch.nn.Module, teacher: torch.nn.Module, batch: Mapping[str, Tensor]
) -> float:
    """Token-mean KL(teacher || student) on the counted targets of ``batch``."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s, t = student(**inputs).logits[:, :-1], teacher(**inputs).logits[:, :-1]
    mask = batch["labels"][:, 1:] != -100
    return float(reference_impls.REGISTRY["forward_kl"](s, t, mask))


def training_args(
    out_dir: str | Path, steps: int, batch_size: int, **overrides: Any
) -> TrainingArguments:
    """CPU training arguments for the tiny runs: no saving, no reporting, fixed seed."""
    settings: dict[str, Any] = {
        "output_dir": str(out_dir),
        "max_steps": steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": 3e-3,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "seed": 0,
        "data_seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **overrides,
    }
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        settings.setdefault("ddp_backend", "gloo")  # CPU processes (accelerate launch --cpu)
    return TrainingArguments(**settings)


def run_tiny_hf_demo(
    loss: str,
    steps: int = 20,
    *,
    family: Family = "llama",
    fused: bool = False,
    alpha: float = 0.0,
    temperature: float = 1.0,
    on_policy_ratio: float | None = None,
    loss_params: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    gradient_accumulation_steps: int = 1,
    ragged: bool = False,
    save: str | Path | None = None,
) -> dict[str, Any]:
    """Distil a tiny teacher into a tiny student with ``loss`` for ``steps`` Trainer steps.

    Returns ``{"loss", "family", "steps", "world_size", "kl_before", "kl_after", "history"}``
    (KL(teacher || student) on 16 held-out sequences; ``history`` the Trainer's logs, with
    ``kd`` and ``ce``). ``batch_size`` is per process and per accumulation step; ``ragged``
    gives the sequences different lengths (see :func:`tiny_dataset`). ``save`` writes the
    student's ``state_dict`` (rank 0). ``on_policy_ratio`` defaults to 1 for the losses that
    assume the student's own samples, else 0. Runs under ``accelerate launch`` unchanged.
    """
    from transformers import PrinterCallback

    from reference_impls.integrations.transformers import DistillationTrainer
    from reference_impls.teacher_cache import TeacherCache, write_teacher_cache

    teacher = tiny_teacher(family)
    student = tiny_causal_lm(family, seed=0)
    collate = DistillationCollator(pad_token_id=0)
    heldout = collate(tiny_dataset(16, seed=99))
    kl_before = heldout_kl(student, teacher, heldout)
    data = tiny_dataset(256, seed=0, ragged=ragged)
    if loss == "sft_loss":  # sequence-level KD: the completions are the teacher's own text
        data = teacher_written(teacher, data)
    with tempfile.TemporaryDirectory() as out_dir:
        cache = None
        mode = CACHE_MODES.get(loss_kind(loss))
        if mode is not None:  # offline KD: the teacher's top-k or samples, written once
            path = write_teacher_cache(
                Path(out_dir) / "teacher.safetensors",
                lambda ids: teacher(input_ids=ids).logits,
                [ex["input_ids"] for ex in data],
                **({"k": 16} if mode == "topk" else {"mode": "sampled", "samples": 64}),
                progress=False,
            )
            cache = TeacherCache.open(path)
        trainer = DistillationTrainer(
            student,
            None if cache is not None else teacher,
            training_args(
                out_dir, steps, batch_size, gradient_accumulation_steps=gradient_accumulation_steps
            ),
            train_dataset=data,
            data_collator=collate,
            teacher_cache=cache,
            loss=loss,
            loss_params=loss_params,
            temperature=temperature,
            alpha=alpha,
            fused=fused,
            on_policy_ratio=(
                on_policy_ratio
                if on_policy_ratio is not None
                else float(loss_kind(loss) in ON_POLICY_KINDS)
            ),
            max_new_tokens=COMPLETION_LEN,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        if cache is not None:
            cache.close()
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if save is not None and trainer.accelerator.is_main_process:
        torch.save({k: v.detach().cpu() for k, v in trained.state_dict().items()}, save)
    kl_after = heldout_kl(trained.cpu(), teacher.cpu(), heldout)
    if not (math.isfinite(kl_before) and math.isfinite(kl_after)):
        raise RuntimeError(f"held-out KL is not finite: {kl_before} -> {kl_after}")
    return {
        "loss": loss,
        "family": family,
        "steps": steps,
        "world_size": trainer.accelerator.num_processes,
        "kl_before": kl_before,
        "kl_after": kl_after,
        "history": trainer.state.log_history,
    }
