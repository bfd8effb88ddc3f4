r"""The tiny causal LMs of the demos: teacher, student, projected student and reward model.

A :class:`TinyLM` is a pre-norm transformer with causal self-attention written out, so that the
attention probabilities (for ``attention_kl``) and the final hidden states (for the
hidden-state losses) are visible in its output. Sizes come from :class:`DemoConfig`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn


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
