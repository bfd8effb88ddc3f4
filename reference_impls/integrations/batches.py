"""Batches of prompt + completion sequences: padding, and rebuilding rows from sampled completions.

Layout used throughout: rows right-padded, ``labels`` aligned with ``input_ids`` and -100 on
the prompt and the padding (a causal LM's loss then reads ``labels[:, 1:]``). Generation wants
the prompts left-padded instead; :func:`split_prompts` and :func:`completion_batch` convert
between the two. Pure torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

IGNORE_INDEX = -100


def _as_list(x: Any) -> list[int]:
    return x.tolist() if isinstance(x, Tensor) else [int(v) for v in x]


@dataclass
class DistillationCollator:
    """Right-pad examples into ``input_ids``, ``attention_mask``, ``labels`` (and ``cache_index``).

    An example is a mapping with ``input_ids`` and optionally ``labels`` (default: every token
    counts), ``prompt_length`` (its first tokens become -100 labels) and ``cache_index`` (its
    row in a teacher cache).
    """

    pad_token_id: int

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        rows = [_as_list(e["input_ids"]) for e in examples]
        labels = []
        for ex, ids in zip(examples, rows, strict=True):
            lab = _as_list(ex["labels"]) if "labels" in ex else list(ids)
            if len(lab) != len(ids):
                raise ValueError(f"labels ({len(lab)}) and input_ids ({len(ids)}) differ in length")
            n_prompt = int(ex.get("prompt_length", 0))
            labels.append([IGNORE_INDEX] * n_prompt + lab[n_prompt:])
        width = max(len(r) for r in rows)
        batch = {
            "input_ids": torch.tensor([r + [self.pad_token_id] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "labels": torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels]),
        }
        if "cache_index" in examples[0]:
            batch["cache_index"] = torch.tensor([int(e["cache_index"]) for e in examples])
        return batch


def prompt_lengths(attention_mask: Tensor, labels: Tensor) -> Tensor:
    """Per row, the position of the first counted label (the whole row if none counts)."""
    counted = labels != IGNORE_INDEX
    first = counted.int().argmax(dim=1)
    return torch.where(counted.any(dim=1), first, attention_mask.sum(dim=1))


def split_prompts(
    input_ids: Tensor, attention_mask: Tensor, labels: Tensor, pad_id: int
) -> tuple[Tensor, Tensor]:
    """Left-padded prompts ``[B, P]`` and their attention mask, ready for ``generate``."""
    lengths = prompt_lengths(attention_mask, labels).tolist()
    if min(lengths, default=1) == 0:
        raise ValueError(
            "on-policy sampling needs a prompt in every row: a row's labels count from its "
            "first token (give examples a prompt_length, or -100 labels on the prompt)"
        )
    width = max(lengths)
    prompts = input_ids.new_full((input_ids.shape[0], width), pad_id)
    mask = attention_mask.new_zeros((input_ids.shape[0], width))
    for row, n in enumerate(lengths):
        prompts[row, width - n :] = input_ids[row, :n]
        mask[row, width - n :] = 1
    return prompts, mask


def completion_batch(
    prompts: Tensor,
    prompt_mask: Tensor,
    completions: Tensor,
    eos_ids: Sequence[int],
    pad_id: int,
) -> dict[str, Tensor]:
    """Right-padded rows ``prompt + completion`` with labels on the completion only.

    A completion ends after its first end-of-sequence token (kept, as a target) or at its
    last sampled token; what ``generate`` wrote after it is dropped.
    """
    rows, labels = [], []
    for prompt, keep, comp in zip(prompts, prompt_mask.bool(), completions, strict=True):
        p = prompt[keep].tolist()
        c = comp.tolist()
        ends = [i for i, tok in enumerate(c) if tok in eos_ids]
        c = c[: ends[0] + 1] if ends else c
        rows.append(p + c)
        labels.append([IGNORE_INDEX] * len(p) + c)
    width = max(len(r) for r in rows)
    return {
        "input_ids": torch.tensor(
            [r + [pad_id] * (width - len(r)) for r in rows], device=prompts.device
        ),
        "attention_mask": torch.tensor(
            [[1] * len(r) + [0] * (width - len(r)) for r in rows], device=prompts.device
        ),
        "labels": torch.tensor(
            [lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels], device=prompts.device
        ),
    }
