r"""The zoo's capacity-limited student and the training task of each zoo loss.

The zoo trains every token-level loss of the registry plus :data:`BASELINE` (cross-entropy on
teacher samples, the black-box baseline), each through the step of its kind, with the
parameters of its registry spec (advanced by the spec's ``schedule`` after every step, if any).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reference_impls.demos.world import StepParams, Task
from reference_impls.registry import SPECS, TOKEN_LEVEL_LOSSES, Kind
from reference_impls.zoo.language import Language, ZooConfig

#: The black-box baseline: cross-entropy on tokens sampled from the teacher.
BASELINE = "sft_loss"
#: What the zoo trains by default: every token-level loss, then the baseline.
DEFAULT_LOSSES: tuple[str, ...] = (*TOKEN_LEVEL_LOSSES, BASELINE)
ZOO_LOSSES: frozenset[str] = frozenset(DEFAULT_LOSSES)


class ZooStudent(nn.Module):
    """Two-token-window MLP LM with a low-rank output head: the capacity-limited student."""

    def __init__(self, vocab_size: int, d_embed: int, d_hidden: int, rank: int) -> None:
        super().__init__()
        self.first = nn.Embedding(vocab_size, d_embed)
        self.second = nn.Embedding(vocab_size, d_embed)
        self.body = nn.Sequential(
            nn.Linear(d_embed, d_hidden), nn.GELU(), nn.Linear(d_hidden, rank)
        )
        self.head = nn.Linear(rank, vocab_size)

    def forward(self, contexts: Tensor) -> Tensor:
        """``[..., 2]`` token pairs -> ``[..., V]`` next-token logits."""
        hidden = self.first(contexts[..., 0]) + self.second(contexts[..., 1])
        logits: Tensor = self.head(self.body(hidden))
        return logits


def build_zoo_task(
    loss: str, cfg: ZooConfig, language: Language, device: torch.device, seed: int
) -> Task:
    """Seed, draw the training pool, build the student and the step of ``loss``.

    The student initialisation depends on ``seed`` only (not on ``loss``), so every loss
    starts from the same weights; the pool too. ``loss`` is a token-level loss or ``sft_loss``.
    """
    if loss not in ZOO_LOSSES:
        raise ValueError(f"the zoo trains {sorted(ZOO_LOSSES)}, not {loss!r}")
    torch.manual_seed(seed)
    student = ZooStudent(cfg.vocab_size, cfg.d_embed, cfg.d_hidden, cfg.rank).to(device)
    gen = torch.Generator().manual_seed(seed)  # CPU: the same pool on every device
    pick = language.train_ids.cpu()[
        torch.randint(len(language.train_ids), (cfg.n_pool,), generator=gen)
    ]
    contexts = language.contexts(pick)
    probs = language.log_probs.cpu()[pick].double().exp()
    targets = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    pool = (contexts.to(device), targets.to(device))
    spec = SPECS[loss]
    params = dict(spec.params)
    if spec.fit_params is not None:
        params.update(spec.fit_params(language.teacher_logprobs(pool[0]), pool[1]))
    scheduled = StepParams(params, spec.schedule(cfg.steps) if spec.schedule else None)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The kind's call: targets for a sequence loss, teacher log-probs for a token loss."""
        logits, now = student(batch[0]), scheduled.current
        if spec.kind is Kind.SEQUENCE:
            value = spec.function(logits, batch[1], **now)
        else:
            value = spec.function(logits, language.teacher_logprobs(batch[0]), **now)
        return value, value

    held_out = language.contexts(language.held_out_ids)
    return Task(
        name=loss,
        params=list(student.parameters()),
        pool=pool,
        step=step,
        student_logprobs=lambda c: student(c).log_softmax(-1),
        teacher_logprobs=language.teacher_logprobs,
        eval_seqs=held_out,
        module=student,
        on_step=scheduled.on_step,
    )
