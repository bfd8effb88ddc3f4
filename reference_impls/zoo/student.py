r"""The zoo's capacity-limited student and the training task of each zoo loss.

The zoo trains every token-level loss of the registry, the on-policy policy-gradient losses
(:attr:`~reference_impls.registry.Kind.ON_POLICY_PG`: each step the student samples one next
token per context of the batch, scored by the teacher's log-prob of it) and :data:`BASELINE`
(cross-entropy on teacher samples, the black-box baseline), each through the step of its kind,
with the parameters of its registry spec (advanced by the spec's ``schedule`` after every step,
if any). Opt-in entries train a sparse loss on cached teacher targets (:mod:`.sparse`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reference_impls.demos.world import StepParams, Task
from reference_impls.registry import LOSSES, SPECS, TOKEN_LEVEL_LOSSES, Kind
from reference_impls.zoo.language import Language, ZooConfig
from reference_impls.zoo.sparse import SPARSE_ENTRIES, cached_targets

#: The black-box baseline: cross-entropy on tokens sampled from the teacher.
BASELINE = "sft_loss"
#: Losses trained on the student's own samples (one sampled next token per context).
ON_POLICY_LOSSES: tuple[str, ...] = tuple(s.name for s in LOSSES if s.kind is Kind.ON_POLICY_PG)
#: What the zoo trains by default: every token-level loss, the on-policy ones, the baseline.
DEFAULT_LOSSES: tuple[str, ...] = (*TOKEN_LEVEL_LOSSES, *ON_POLICY_LOSSES, BASELINE)
#: Everything the zoo can train: the defaults and the sparse-cache entries (opt-in).
ZOO_LOSSES: frozenset[str] = frozenset(DEFAULT_LOSSES) | frozenset(SPARSE_ENTRIES)
_SPARSE_KINDS = (Kind.SPARSE_TOPK, Kind.SPARSE_SAMPLED)


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
    starts from the same weights; the pool too. ``loss`` is a token-level loss, an on-policy
    loss or ``sft_loss``. On-policy samples come from a generator seeded with ``seed + 1``.
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
    pool: tuple[Tensor, ...] = (contexts.to(device), targets.to(device))
    spec = SPECS[SPARSE_ENTRIES[loss].loss] if loss in SPARSE_ENTRIES else SPECS[loss]
    if loss in SPARSE_ENTRIES:  # the cache's sparse targets at the pool's contexts
        pool = (*pool, *cached_targets(loss, language, pool[0], seed))
    params = dict(spec.params)
    if spec.fit_params is not None:
        params.update(spec.fit_params(language.teacher_logprobs(pool[0]), pool[1]))
    scheduled = StepParams(params, spec.schedule(cfg.steps) if spec.schedule else None)

    sampler = torch.Generator(device=device).manual_seed(seed + 1)

    def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The kind's call: targets for a sequence loss, teacher log-probs for a token loss."""
        logits, now = student(batch[0]), scheduled.current
        if spec.kind is Kind.SEQUENCE:
            value = spec.function(logits, batch[1], **now)
        elif spec.kind is Kind.ON_POLICY_PG:  # contexts as sequences of one sampled token
            probs = logits.detach().softmax(-1)
            sampled = torch.multinomial(probs, 1, generator=sampler)
            log_p = language.teacher_logprobs(batch[0]).gather(-1, sampled)
            value = spec.function(logits.unsqueeze(1), sampled, log_p, **now)
        elif spec.kind in _SPARSE_KINDS:
            value = spec.function(logits, batch[2], batch[3], **now)
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
        sampler=sampler if spec.kind is Kind.ON_POLICY_PG else None,
        on_step=scheduled.on_step,
    )
