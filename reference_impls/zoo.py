r"""The loss zoo: every token-level loss trains the same student on one known language.

``python -m reference_impls.zoo [--losses ...] [--seeds 3] [--steps N] [--device auto|cpu|cuda]
[--out DIR]`` trains one capacity-limited student per loss of
:data:`reference_impls.TOKEN_LEVEL_LOSSES`, plus ``sft_loss`` on teacher samples (the
black-box baseline), from the same initialisation and for the same budget, over several seeds;
measures them on held-out contexts (:mod:`reference_impls.zoo_metrics`); and writes
``zoo.json`` and SVG plots to ``--out`` (default ``build/zoo``). It also runs unchanged under
``torchrun --nproc_per_node=K -m reference_impls.zoo`` (the loop of :mod:`reference_impls.demo`
is data-parallel; rank 0 writes the files).

**The language.** Vocabulary :math:`V = 64`; a context is the previous two tokens
:math:`(a, b)`, so there are :math:`V^2 = 4096` contexts. Each token :math:`x` owns two fixed
random component distributions, :math:`A_x` (for :math:`x` in the first slot) and :math:`B_x`
(second slot), each made of 1 or 2 *peaks* carrying 85% of the mass (two peaks split it
between 35:65 and 65:35), a Zipfian *tail* of 12 tokens (:math:`\propto 1/r`) carrying 14.9%,
and a floor of 0.1% spread over the whole vocabulary. The true next-token distribution is the
explicit mixture

.. math:: p(\cdot \mid a, b) = \lambda_{ab}\, A_a + (1 - \lambda_{ab})\, B_b, \qquad
    \lambda_{ab} = \tfrac12 + 0.075\,(s_a - s_b) \in [0.35, 0.65]

with fixed :math:`s_x \in [-1, 1]`. **Modes** of a context are the peak tokens of its two
components: 2 to 4 tokens (1 in the 0.5% of contexts where both components peak on the same
token), each with :math:`p \ge 0.35 \cdot 0.85 \cdot 0.35 > 0.1`, while every other token
has :math:`p < 0.06`; so the modes are also exactly the tokens with :math:`p \ge 0.1`. Tail
tokens keep :math:`p > 10^{-3}`; tokens in no peak and no tail (about 40 per context) have
:math:`p = 0.001 / 64`: the teacher rules them out, and student mass there is *hallucination
mass*. A quarter of the contexts are held out and never trained on; the metrics
(:mod:`reference_impls.zoo_metrics`: a mode counts as recalled where the student gives it
:math:`q \ge 0.05`) are averaged over them.

**Teacher and student.** The teacher is the language itself (its logits are :math:`\log p`:
a teacher that matches the data exactly). The student is a two-token-window MLP language model
(Bengio et al., 2003): embeddings of both slots (width 32), summed, a GELU layer of width 64,
then a **rank-8 bottleneck** before the output layer, so its logits over all contexts form a
matrix of rank at most 9 and it cannot match every mixture: each loss decides what to give up.
Training pool: 16,384 (context, next token) pairs with contexts drawn uniformly from the
training contexts and next tokens sampled from :math:`p`; KD losses see the teacher's full
distribution at the pool's contexts, ``sft_loss`` only the sampled token. Adam, lr 0.01,
global batch 64, 1500 steps by default. One seed fixes the student initialisation (the same
for every loss), the pool and the batch order; the language is the same for every seed.

Loss parameters: the defaults of each function, except ``generalized_jsd`` with
:math:`\beta = 0.9` (``beta = 0.5`` is ``js_divergence``) and ``confidence_aware_kl`` with
:math:`\gamma` = :func:`reference_impls.teacher_confidence` on the training pool, as in the demos.

**Claims.** :data:`CLAIMS` states each claim of the literature the zoo tests with an explicit
numeric criterion; ``zoo.json`` records the verdict on the means over seeds, how many seeds
agree on their own, and the numbers used, whether the claim holds or not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape

import torch
from torch import Tensor, nn

from reference_impls import REGISTRY, TOKEN_LEVEL_LOSSES
from reference_impls.bitdistiller import teacher_confidence
from reference_impls.demo import (
    TOKEN_PARAMS,
    Task,
    dist_context,
    distributed,
    resolve_device,
    train_loop,
)
from reference_impls.zoo_metrics import METRIC_DEFINITIONS, distribution_metrics

#: The black-box baseline: cross-entropy on tokens sampled from the teacher.
BASELINE = "sft_loss"
#: What the zoo trains by default: every token-level loss, then the baseline.
DEFAULT_LOSSES: tuple[str, ...] = (*TOKEN_LEVEL_LOSSES, BASELINE)
ZOO_LOSSES: frozenset[str] = frozenset(DEFAULT_LOSSES)

SCHEMA = "kd-atlas/zoo/1"


@dataclass(frozen=True)
class ZooConfig:
    """The language, the student and the training budget (see the module docstring)."""

    vocab_size: int = 64
    peak_mass: float = 0.85
    tail_size: int = 12
    floor_mass: float = 1e-3
    mix_spread: float = 0.075
    held_out_fraction: float = 0.25
    language_seed: int = 1234
    d_embed: int = 32
    d_hidden: int = 64
    rank: int = 8
    n_pool: int = 16384
    batch_size: int = 64
    lr: float = 1e-2
    steps: int = 1500
    n_curve_points: int = 10


# ----------------------------------------------------------------------------------- language


@dataclass(frozen=True)
class Language:
    """The synthetic language: true next-token log-probs and modes of all :math:`V^2` contexts.

    Context ``(a, b)`` has index ``a * V + b``; ``log_probs[i]`` and ``modes[i]`` are its
    distribution and its mode tokens; ``train_ids`` and ``held_out_ids`` split the indices.
    """

    log_probs: Tensor  # [V*V, V] float32
    modes: Tensor  # [V*V, V] bool
    train_ids: Tensor  # [n_train] long
    held_out_ids: Tensor  # [n_held_out] long

    @property
    def vocab_size(self) -> int:
        """Number of tokens :math:`V`."""
        return int(self.log_probs.shape[-1])

    def contexts(self, ids: Tensor) -> Tensor:
        """``[N, 2]`` token pairs ``(a, b)`` of the context indices ``ids``."""
        v = self.vocab_size
        return torch.stack([ids // v, ids % v], dim=-1)

    def index(self, contexts: Tensor) -> Tensor:
        """Context indices of ``[..., 2]`` token pairs (the inverse of :meth:`contexts`)."""
        return contexts[..., 0] * self.vocab_size + contexts[..., 1]

    def teacher_logprobs(self, contexts: Tensor) -> Tensor:
        """``[..., V]`` true next-token log-probabilities of ``[..., 2]`` contexts."""
        return self.log_probs[self.index(contexts)]


def _components(cfg: ZooConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(dists, peaks)`` ``[V, V]``: one component per token (peaks, Zipf tail, floor)."""
    v = cfg.vocab_size
    ranks = torch.arange(1, cfg.tail_size + 1, dtype=torch.float64)
    zipf = (1 / ranks) / (1 / ranks).sum()
    tail_mass = 1.0 - cfg.peak_mass - cfg.floor_mass
    dists = torch.full((v, v), cfg.floor_mass / v, dtype=torch.float64)
    peaks = torch.zeros(v, v, dtype=torch.bool)
    for x in range(v):
        order = torch.randperm(v, generator=gen)
        n_peaks = 1 + int(torch.randint(2, (1,), generator=gen))
        share = 0.35 + 0.3 * float(torch.rand((), generator=gen, dtype=torch.float64))
        weights = torch.tensor([1.0] if n_peaks == 1 else [share, 1 - share], dtype=torch.float64)
        peak_ids, tail_ids = order[:n_peaks], order[n_peaks : n_peaks + cfg.tail_size]
        dists[x, peak_ids] += cfg.peak_mass * weights
        dists[x, tail_ids] += tail_mass * zipf
        peaks[x, peak_ids] = True
    return dists, peaks


def build_language(cfg: ZooConfig, device: torch.device) -> Language:
    """Build the language of ``cfg`` (deterministic in ``cfg.language_seed``) on ``device``."""
    gen = torch.Generator().manual_seed(cfg.language_seed)
    first, first_peaks = _components(cfg, gen)
    second, second_peaks = _components(cfg, gen)
    s = 2 * torch.rand(cfg.vocab_size, generator=gen, dtype=torch.float64) - 1
    lam = (0.5 + cfg.mix_spread * (s[:, None] - s[None, :]))[..., None]  # [V, V, 1]
    probs = lam * first[:, None, :] + (1 - lam) * second[None, :, :]  # [a, b, next]
    modes = first_peaks[:, None, :] | second_peaks[None, :, :]
    v2 = cfg.vocab_size**2
    order = torch.randperm(v2, generator=gen)
    n_held = round(cfg.held_out_fraction * v2)
    return Language(
        probs.reshape(v2, -1).log().float().to(device),
        modes.reshape(v2, -1).to(device),
        order[n_held:].sort().values.to(device),
        order[:n_held].sort().values.to(device),
    )


# ------------------------------------------------------------------------------------ student


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
    fn = REGISTRY[loss]

    if loss == BASELINE:

        def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
            value: Tensor = fn(student(batch[0]), batch[1])
            return value, value

    else:
        params: dict[str, object] = dict(TOKEN_PARAMS.get(loss, {}))
        if loss == "confidence_aware_kl":
            params["gamma"] = teacher_confidence(language.teacher_logprobs(pool[0]), pool[1])

        def step(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
            value: Tensor = fn(student(batch[0]), language.teacher_logprobs(batch[0]), **params)
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
    )


# -------------------------------------------------------------------------------------- runs


@torch.no_grad()
def evaluate(task: Task, language: Language) -> dict[str, float]:
    """:func:`~reference_impls.zoo_metrics.distribution_metrics` of the student, held out."""
    ids = language.held_out_ids
    log_q = task.student_logprobs(language.contexts(ids))
    return distribution_metrics(language.log_probs[ids], log_q, language.modes[ids])


def run_one(
    loss: str, seed: int, cfg: ZooConfig, language: Language, device: torch.device
) -> dict[str, Any]:
    """Train one student with ``loss`` and seed ``seed``; return its metrics and traces.

    Besides the held-out metrics: ``ms_per_step`` (wall time of an optimiser step, evaluation
    excluded), the per-step gradient norm's maximum and median, and a learning curve (logged
    training loss and held-out forward KL at ``n_curve_points + 1`` points).
    """
    task = build_zoo_task(loss, cfg, language, device, seed)
    curve: dict[str, list[float]] = {"step": [], "train_loss": [], "forward_kl": []}

    def log(step: int, train_loss: float) -> None:
        curve["step"].append(step)
        curve["train_loss"].append(train_loss)
        curve["forward_kl"].append(evaluate(task, language)["forward_kl"])

    stats = train_loop(
        task,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        log_every=max(1, cfg.steps // cfg.n_curve_points),
        on_log=log,
        record_grad_norms=True,
    )
    return {
        "seed": seed,
        "metrics": evaluate(task, language),
        "ms_per_step": 1000 * stats.seconds_per_step,
        "grad_norm_max": max(stats.grad_norms),
        "grad_norm_median": statistics.median(stats.grad_norms),
        "curve": curve,
    }


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


#: Per-run quantities summarised across seeds besides the held-out metrics.
RUN_QUANTITIES: dict[str, str] = {
    "ms_per_step": "wall time of one optimiser step in milliseconds (evaluation excluded)",
    "grad_norm_max": "largest global L2 norm of the gradient over the training steps",
}


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"mean": {...}, "std": {...}}`` over the runs (seeds) of one loss."""
    keys = [*METRIC_DEFINITIONS, *RUN_QUANTITIES]
    out: dict[str, dict[str, float]] = {"mean": {}, "std": {}}
    for key in keys:
        values = [r["metrics"][key] if key in r["metrics"] else r[key] for r in runs]
        out["mean"][key], out["std"][key] = _spread(values)
    return out


# ------------------------------------------------------------------------------------ claims

Lookup = Callable[[str, str], float]  # (loss, metric) -> value


@dataclass(frozen=True)
class Claim:
    """A claim of the literature and the pre-registered test of it on the zoo's numbers.

    ``check`` receives a lookup ``(loss, metric) -> value`` and says whether the numbers agree;
    it is applied to the means over seeds (the verdict) and to each seed alone (robustness).
    ``uses`` lists the ``(loss, metric)`` pairs it reads, reported as evidence.
    """

    id: str
    statement: str
    sources: tuple[str, ...]
    criterion: str
    uses: tuple[tuple[str, str], ...]
    check: Callable[[Lookup], bool]

    @property
    def losses(self) -> set[str]:
        """The losses the check needs."""
        return {loss for loss, _ in self.uses}


def _non_increasing(values: Sequence[float]) -> bool:
    return all(b <= a for a, b in zip(values, values[1:], strict=False))


def _lower(loss: str, other: str, metric: str) -> Callable[[Lookup], bool]:
    """Check: ``loss`` has a lower ``metric`` than ``other``."""
    return lambda v: v(loss, metric) < v(other, metric)


_GJSD_PATH = ("forward_kl", "js_divergence", "generalized_jsd", "reverse_kl")  # beta 0, .5, .9, 1

#: What both AKL claims rest on: head and tail gaps of AKL and of the two KLs.
_AKL_EVIDENCE = tuple(
    (loss, metric)
    for loss in ("adaptive_kl", "forward_kl", "reverse_kl")
    for metric in ("head_gap", "tail_gap")
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fkl_mean_seeking",
        "Forward KL is mean-seeking: the student spreads its mass to cover the teacher's modes.",
        ("gu2023minillm",),
        "forward_kl has a higher entropy ratio and a higher mode recall than reverse_kl",
        tuple(
            (lo, m) for lo in ("forward_kl", "reverse_kl") for m in ("entropy_ratio", "mode_recall")
        ),
        lambda v: (
            v("forward_kl", "entropy_ratio") > v("reverse_kl", "entropy_ratio")
            and v("forward_kl", "mode_recall") > v("reverse_kl", "mode_recall")
        ),
    ),
    Claim(
        "fkl_void_mass",
        "Forward KL makes the student put mass where the teacher has almost none "
        "(MiniLLM's 'void regions').",
        ("gu2023minillm",),
        "forward_kl has a higher hallucination mass than reverse_kl",
        (("forward_kl", "hallucination_mass"), ("reverse_kl", "hallucination_mass")),
        lambda v: v("forward_kl", "hallucination_mass") > v("reverse_kl", "hallucination_mass"),
    ),
    Claim(
        "rkl_mode_seeking",
        "Reverse KL is mode-seeking: the student concentrates on a few of the teacher's modes.",
        ("gu2023minillm",),
        "reverse_kl has an entropy ratio below 1 and a lower mode recall than forward_kl",
        (
            ("reverse_kl", "entropy_ratio"),
            ("reverse_kl", "mode_recall"),
            ("forward_kl", "mode_recall"),
        ),
        lambda v: (
            v("reverse_kl", "entropy_ratio") < 1
            and v("reverse_kl", "mode_recall") < v("forward_kl", "mode_recall")
        ),
    ),
    *(
        Claim(
            f"skew_{short}_stable",
            f"Skewed {direction} KL is more stable than {direction} KL: its gradient stays "
            "bounded (DistiLLM).",
            ("ko2024distillm",),
            f"the largest per-step gradient norm is lower for skew_{plain} than for {plain}",
            ((f"skew_{plain}", "grad_norm_max"), (plain, "grad_norm_max")),
            _lower(f"skew_{plain}", plain, "grad_norm_max"),
        )
        for short, direction, plain in (
            ("fkl", "forward", "forward_kl"),
            ("rkl", "reverse", "reverse_kl"),
        )
    ),
    Claim(
        "akl_balances_head_and_tail",
        "Adaptive KL balances the fit of the teacher's head and tail.",
        ("wu2024rethinking",),
        "adaptive_kl's head gap and tail gap are each at most the larger of forward_kl's and "
        "reverse_kl's (it is never the worst of the three on either part)",
        _AKL_EVIDENCE,
        lambda v: all(
            v("adaptive_kl", m) <= max(v("forward_kl", m), v("reverse_kl", m))
            for m in ("head_gap", "tail_gap")
        ),
    ),
    Claim(
        "akl_beats_fkl_and_rkl",
        "Adaptive KL fits the teacher better than both forward and reverse KL.",
        ("wu2024rethinking",),
        "adaptive_kl's head gap + tail gap (twice the total variation) is lower than both "
        "forward_kl's and reverse_kl's",
        _AKL_EVIDENCE,
        lambda v: all(
            v("adaptive_kl", "head_gap") + v("adaptive_kl", "tail_gap")
            < v(other, "head_gap") + v(other, "tail_gap")
            for other in ("forward_kl", "reverse_kl")
        ),
    ),
    Claim(
        "gjsd_interpolates",
        "Generalized JSD interpolates between forward KL (beta = 0) and reverse KL (beta = 1).",
        ("agarwal2023policy",),
        "entropy ratio and hallucination mass are non-increasing along forward_kl (beta 0), "
        "js_divergence (0.5), generalized_jsd (0.9), reverse_kl (1)",
        tuple((lo, m) for lo in _GJSD_PATH for m in ("entropy_ratio", "hallucination_mass")),
        lambda v: all(
            _non_increasing([v(lo, m) for lo in _GJSD_PATH])
            for m in ("entropy_ratio", "hallucination_mass")
        ),
    ),
    Claim(
        "white_box_beats_black_box",
        "Distilling the teacher's distribution (white-box KD) beats fine-tuning on its samples "
        "(black-box, sequence-level KD) for the same budget.",
        ("kim2016sequence",),
        "forward_kl reaches a lower held-out forward KL than sft_loss on teacher samples",
        (("forward_kl", "forward_kl"), ("sft_loss", "forward_kl")),
        lambda v: v("forward_kl", "forward_kl") < v("sft_loss", "forward_kl"),
    ),
    Claim(
        "soft_ce_trains_like_fkl",
        "Soft cross-entropy has the gradient of forward KL, so it trains the same student "
        "(a sanity check of the implementations).",
        (),
        "every held-out metric of soft_cross_entropy equals forward_kl's within 1e-3 (relative)",
        tuple((lo, m) for lo in ("soft_cross_entropy", "forward_kl") for m in METRIC_DEFINITIONS),
        lambda v: all(
            abs(v("soft_cross_entropy", m) - v("forward_kl", m))
            <= 1e-3 * max(1.0, abs(v("forward_kl", m)))
            for m in METRIC_DEFINITIONS
        ),
    ),
)


def _lookup(results: dict[str, Any], run_index: int | None) -> Lookup:
    """Values of the mean over seeds (``run_index=None``) or of one run."""

    def value(loss: str, metric: str) -> float:
        entry = results[loss]
        if run_index is None:
            return float(entry["mean"][metric])
        run = entry["runs"][run_index]
        return float(run["metrics"][metric] if metric in run["metrics"] else run[metric])

    return value


def evaluate_claims(results: dict[str, Any], n_seeds: int) -> list[dict[str, Any]]:
    """Verdict of every claim of :data:`CLAIMS` (``None`` when a loss it needs was not run)."""
    verdicts = []
    for claim in CLAIMS:
        entry: dict[str, Any] = {
            "id": claim.id,
            "statement": claim.statement,
            "sources": list(claim.sources),
            "criterion": claim.criterion,
        }
        if not claim.losses <= results.keys():
            missing = sorted(claim.losses - results.keys())
            entry.update(reproduced=None, note=f"not run: needs {', '.join(missing)}")
        else:
            means = _lookup(results, None)
            entry["reproduced"] = bool(claim.check(means))
            entry["seeds_agreeing"] = sum(
                bool(claim.check(_lookup(results, i))) for i in range(n_seeds)
            )
            entry["n_seeds"] = n_seeds
            entry["evidence"] = {f"{lo}.{m}": means(lo, m) for lo, m in claim.uses}
        verdicts.append(entry)
    return verdicts


# --------------------------------------------------------------------------------------- SVG

#: One colour per zoo loss (Tableau 10 plus two), fixed by the loss's place in DEFAULT_LOSSES.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#17becf",
    "#bab0ac",
    "#333333",
)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

#: The files :func:`write_outputs` writes, by role.
PLOT_FILES: dict[str, str] = {
    "table": "zoo_table.svg",
    "fkl_rkl": "zoo_fkl_rkl.svg",
    "entropy": "zoo_entropy.svg",
}


def _color(loss: str) -> str:
    return PALETTE[DEFAULT_LOSSES.index(loss) % len(PALETTE)] if loss in ZOO_LOSSES else "#000"


def _svg(kind: str, width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    """An accessible standalone SVG document (ids prefixed so several can share a page)."""
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="zoo-{kind}-title zoo-{kind}-desc" font-family="{FONT}" '
            'font-size="12" fill="#222">',
            f'<title id="zoo-{kind}-title">{escape(title)}</title>',
            f'<desc id="zoo-{kind}-desc">{escape(desc)}</desc>',
            f'<rect width="{width}" height="{height}" fill="#fff"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def _text(x: float, y: float, s: str, **attrs: str | float) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(s)}</text>'


def _fmt(value: float) -> str:
    """Three significant digits (for descriptions and axis labels)."""
    return f"{value:.3g}"


#: Columns of the metric table: key, header, which value is best, decimals shown.
TABLE_COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("forward_kl", "KL(p||q) ↓", "min", 3),
    ("reverse_kl", "KL(q||p) ↓", "min", 3),
    ("entropy_ratio", "H(q)/H(p) →1", "one", 3),
    ("hallucination_mass", "halluc. mass ↓", "min", 3),
    ("top1_agreement", "top-1 agree ↑", "max", 3),
    ("mode_recall", "mode recall ↑", "max", 3),
    ("ms_per_step", "ms / step", "none", 2),
)


def table_svg(zoo: dict[str, Any]) -> str:
    """The metric table: mean ± std over seeds per loss; the best value of a column in bold."""
    losses, results = zoo["losses"], zoo["results"]
    name_w, col_w, row_h, top = 170, 118, 24, 58
    width = name_w + col_w * len(TABLE_COLUMNS) + 20
    height = top + row_h * len(losses) + 44
    best: dict[str, float] = {}
    for key, _, rule, _ in TABLE_COLUMNS:
        means = [results[lo]["mean"][key] for lo in losses]
        if rule == "min":
            best[key] = min(means)
        elif rule == "max":
            best[key] = max(means)
        elif rule == "one":
            best[key] = min(means, key=lambda m: abs(m - 1))
    n = len(zoo["seeds"])
    body = [
        _text(
            10,
            22,
            f"Loss zoo: held-out metrics, mean ± std over {n} seed(s)",
            font_size=15,
            font_weight="bold",
        ),
    ]
    for j, (_, header, _, _) in enumerate(TABLE_COLUMNS):
        x = name_w + col_w * (j + 1) - 8
        body.append(_text(x, top - 10, header, text_anchor="end", font_weight="bold"))
    body.append(_text(10, top - 10, "loss", font_weight="bold"))
    body.append(f'<line x1="8" x2="{width - 8}" y1="{top - 4}" y2="{top - 4}" stroke="#888"/>')
    for i, loss in enumerate(losses):
        y = top + row_h * i
        if i % 2:
            body.append(
                f'<rect x="8" y="{y - 2}" width="{width - 16}" height="{row_h}" fill="#f3f5f8"/>'
            )
        body.append(f'<rect x="12" y="{y + 6}" width="10" height="10" fill="{_color(loss)}"/>')
        label = loss + (" (black-box)" if loss == BASELINE else "")
        body.append(_text(28, y + 15, label))
        for j, (key, _, _, digits) in enumerate(TABLE_COLUMNS):
            mean, std = results[loss]["mean"][key], results[loss]["std"][key]
            weight = "bold" if key in best and mean == best[key] else "normal"
            cell = f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
            x = name_w + col_w * (j + 1) - 8
            body.append(
                _text(
                    x,
                    y + 15,
                    cell,
                    text_anchor="end",
                    font_weight=weight,
                    style="font-variant-numeric: tabular-nums",
                )
            )
    foot = (
        f"Teacher entropy {_fmt(zoo['language']['teacher_entropy'])} nats; "
        f"{zoo['config']['steps']} steps, batch {zoo['config']['batch_size']}, "
        f"{len(zoo['seeds'])} seed(s); bold = best mean of the column."
    )
    body.append(_text(10, height - 14, foot, fill="#555"))
    desc = "; ".join(
        f"{lo}: " + ", ".join(f"{k} {_fmt(results[lo]['mean'][k])}" for k, _, _, _ in TABLE_COLUMNS)
        for lo in losses
    )
    return _svg("table", width, height, "Loss zoo metric table", desc, body)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks within ``[lo, hi]`` on a log scale: 1-2-5, or denser for a short range."""
    ticks: list[float] = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) >= 4:
            break
    return ticks


def fkl_rkl_svg(zoo: dict[str, Any]) -> str:
    """Scatter of held-out KL(p||q) against KL(q||p), log axes: one dot per run, ring = mean."""
    losses, results = zoo["losses"], zoo["results"]
    points = [
        (lo, r["metrics"]["forward_kl"], r["metrics"]["reverse_kl"])
        for lo in losses
        for r in results[lo]["runs"]
    ]
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x_lo, x_hi = min(xs) / 1.3, max(xs) * 1.3
    y_lo, y_hi = min(ys) / 1.3, max(ys) * 1.3
    width, height, left, right, top, bottom = 790, 480, 70, 220, 40, 50
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))

    def py(y: float) -> float:
        return top + ph * (1 - (math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)))

    body = [
        _text(
            10,
            22,
            "Forward vs reverse KL to the teacher (held out, log axes)",
            font_size=15,
            font_weight="bold",
        ),
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>',
    ]
    for t in _log_ticks(x_lo, x_hi):
        body.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#e5e5e5"/>'
        )
        body.append(_text(px(t), top + ph + 16, f"{t:g}", text_anchor="middle"))
    for t in _log_ticks(y_lo, y_hi):
        body.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            'stroke="#e5e5e5"/>'
        )
        body.append(_text(left - 6, py(t) + 4, f"{t:g}", text_anchor="end"))
    body.append(
        _text(
            left + pw / 2,
            height - 12,
            "KL(teacher || student): penalises teacher mass the student misses",
            text_anchor="middle",
        )
    )
    body.append(
        _text(
            16,
            top + ph / 2,
            "KL(student || teacher): penalises mass the teacher lacks",
            text_anchor="middle",
            transform=f"rotate(-90 16 {top + ph / 2:.1f})",
        )
    )
    for lo, x, y in points:
        body.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{_color(lo)}" '
            'fill-opacity="0.55"/>'
        )
    means = [
        (lo, results[lo]["mean"]["forward_kl"], results[lo]["mean"]["reverse_kl"]) for lo in losses
    ]
    for lo, x, y in means:
        body.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="6" fill="none" '
            f'stroke="{_color(lo)}" stroke-width="2"/>'
        )
    legend_x, ly = left + pw + 16, top + 8
    for i, (lo, x, y) in enumerate(means):
        body.append(f'<circle cx="{legend_x + 5}" cy="{ly - 4}" r="5" fill="{_color(lo)}"/>')
        body.append(_text(legend_x + 15, ly, lo))
        twins = [o for o, ox, oy in means[:i] if math.isclose(ox, x) and math.isclose(oy, y)]
        if twins:  # e.g. soft_cross_entropy trains exactly like forward_kl
            ly += 14
            body.append(_text(legend_x + 15, ly, f"(same point as {twins[0]})", fill="#555"))
        ly += 18
    desc = "; ".join(f"{lo}: KL(p||q) {_fmt(x)}, KL(q||p) {_fmt(y)}" for lo, x, y in means)
    return _svg("fkl-rkl", width, height, "Forward vs reverse KL per loss", desc, body)


def entropy_svg(zoo: dict[str, Any]) -> str:
    """Student/teacher entropy ratio per loss: bar = mean, dots = seeds, dashed line = 1."""
    results = zoo["results"]
    losses = sorted(zoo["losses"], key=lambda lo: -results[lo]["mean"]["entropy_ratio"])
    runs: dict[str, list[float]] = {
        lo: [float(r["metrics"]["entropy_ratio"]) for r in results[lo]["runs"]] for lo in losses
    }
    x_max = max(1.2, max(max(v) for v in runs.values()) * 1.1)
    left, right, top, row_h = 190, 40, 50, 24
    width = 760
    height = top + row_h * len(losses) + 50
    pw = width - left - right

    def px(x: float) -> float:
        return left + pw * x / x_max

    body = [
        _text(
            10, 22, "Student entropy / teacher entropy (held out)", font_size=15, font_weight="bold"
        ),
    ]
    step = 0.25 if x_max <= 2.5 else 0.5
    for k in range(int(x_max / step) + 1):
        t = k * step
        body.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top - 6}" '
            f'y2="{top + row_h * len(losses)}" stroke="#e5e5e5"/>'
        )
        body.append(_text(px(t), top + row_h * len(losses) + 16, f"{t:g}", text_anchor="middle"))
    for i, lo in enumerate(losses):
        y = top + row_h * i
        mean, std = results[lo]["mean"]["entropy_ratio"], results[lo]["std"]["entropy_ratio"]
        body.append(_text(left - 8, y + 15, lo, text_anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{px(mean) - left:.1f}" height="14" '
            f'fill="{_color(lo)}" fill-opacity="0.8"/>'
        )
        if std > 0:
            body.append(
                f'<line x1="{px(mean - std):.1f}" x2="{px(mean + std):.1f}" '
                f'y1="{y + 11}" y2="{y + 11}" stroke="#222"/>'
            )
        for v in runs[lo]:
            body.append(f'<circle cx="{px(v):.1f}" cy="{y + 11}" r="2.5" fill="#222"/>')
    body.append(
        f'<line x1="{px(1):.1f}" x2="{px(1):.1f}" y1="{top - 10}" '
        f'y2="{top + row_h * len(losses)}" stroke="#222" stroke-dasharray="5 3"/>'
    )
    body.append(_text(px(1) + 4, top - 12, "teacher (= 1)"))
    body.append(
        _text(
            left + pw / 2,
            height - 10,
            "< 1: sharper than the teacher (mode-seeking); > 1: flatter (mass-covering)",
            text_anchor="middle",
            fill="#555",
        )
    )
    desc = "; ".join(f"{lo}: {_fmt(results[lo]['mean']['entropy_ratio'])}" for lo in losses)
    return _svg("entropy", width, height, "Entropy ratio per loss", desc, body)


# ---------------------------------------------------------------------------------- progress


class Progress:
    """A dependency-free progress bar over the zoo's runs (rank 0 only, on stderr).

    On a terminal one line is redrawn in place; otherwise (logs, CI) one line per finished run.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def advance(self, label: str) -> None:
        """Count one finished run, labelled ``label``."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = round(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"[{bar}] {self.done:>{len(str(self.total))}}/{self.total} {label:<28} "
            f"{elapsed:5.0f} s elapsed, ~{left:.0f} s left"
        )
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write("\r" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------- zoo


def run_zoo(
    losses: Sequence[str] = DEFAULT_LOSSES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    config: ZooConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train every (loss, seed), summarise over seeds, check the claims; return the report.

    The report is what ``zoo.json`` holds (see :func:`write_outputs`). Under ``torchrun``
    every rank returns it; use :func:`reference_impls.demo.dist_context` to write once.
    """
    unknown = [lo for lo in losses if lo not in ZOO_LOSSES]
    if unknown or not losses:
        raise ValueError(f"losses must be a non-empty subset of {list(DEFAULT_LOSSES)}: {unknown}")
    if not seeds:
        raise ValueError("at least one seed is needed")
    cfg = config or ZooConfig()
    dev = resolve_device(device)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: more threads only add synchronisation
    try:
        with distributed(dev) as rank_dev:
            ctx = dist_context()
            language = build_language(cfg, rank_dev)
            bar = Progress(len(losses) * len(seeds), enabled=progress and ctx.is_main)
            results: dict[str, Any] = {}
            for loss in losses:
                runs = []
                for seed in seeds:
                    runs.append(run_one(loss, seed, cfg, language, rank_dev))
                    bar.advance(f"{loss} seed {seed}")
                results[loss] = {
                    "kind": "black-box" if loss == BASELINE else "white-box",
                    "params": _loss_params(loss),
                    **summarize(runs),
                    "runs": runs,
                }
    finally:
        torch.set_num_threads(threads)
    held = language.held_out_ids
    teacher_entropy = next(iter(results.values()))["mean"]["teacher_entropy"]
    return {
        "schema": SCHEMA,
        "config": dataclasses.asdict(cfg),
        "language": {
            "vocab_size": cfg.vocab_size,
            "contexts": cfg.vocab_size**2,
            "held_out_contexts": len(held),
            "teacher_entropy": teacher_entropy,
            "modes_per_context": float(language.modes[held].sum(-1).float().mean()),
            "ruled_out_tokens_per_context": float(
                (language.log_probs[held].exp() < 1e-3).sum(-1).float().mean()
            ),
        },
        "device": str(rank_dev),
        "world_size": ctx.world_size,
        "torch": torch.__version__,
        "losses": list(losses),
        "seeds": list(seeds),
        "metric_definitions": {**METRIC_DEFINITIONS, **RUN_QUANTITIES},
        "results": results,
        "claims": evaluate_claims(results, len(seeds)),
        "plots": dict(PLOT_FILES),
        "wall_seconds": time.perf_counter() - start,
    }


def _loss_params(loss: str) -> dict[str, object]:
    """Non-default loss parameters, as recorded in ``zoo.json``."""
    if loss == "confidence_aware_kl":
        return {"gamma": "teacher_confidence on the training pool"}
    return dict(TOKEN_PARAMS.get(loss, {}))


def write_outputs(zoo: dict[str, Any], out: Path) -> list[Path]:
    """Write ``zoo.json`` and the SVG plots of :data:`PLOT_FILES` into ``out``; return paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "zoo.json": json.dumps(zoo, indent=1, sort_keys=False) + "\n",
        PLOT_FILES["table"]: table_svg(zoo),
        PLOT_FILES["fkl_rkl"]: fkl_rkl_svg(zoo),
        PLOT_FILES["entropy"]: entropy_svg(zoo),
    }
    paths = []
    for name, text in files.items():
        path = out / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # readers (the site build) never see a half-written file
        paths.append(path)
    return paths


def format_summary(zoo: dict[str, Any]) -> str:
    """A plain-text table of the means and the claim verdicts, for the terminal."""
    keys = [k for k, _, _, _ in TABLE_COLUMNS]
    headers = [h for _, h, _, _ in TABLE_COLUMNS]
    lines = [f"{'loss':<22}" + "".join(f"{h:>15}" for h in headers)]
    for loss in zoo["losses"]:
        mean = zoo["results"][loss]["mean"]
        lines.append(f"{loss:<22}" + "".join(f"{mean[k]:>15.4f}" for k in keys))
    lines.append("")
    for claim in zoo["claims"]:
        verdict = {True: "reproduced", False: "NOT reproduced", None: "not run"}[
            claim["reproduced"]
        ]
        seeds = (
            f" ({claim['seeds_agreeing']}/{claim['n_seeds']} seeds)" if "n_seeds" in claim else ""
        )
        lines.append(f"{verdict:>15}{seeds}: {claim['id']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m reference_impls.zoo`` (and ``kbtool zoo``); exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m reference_impls.zoo",
        description=(
            "Train one capacity-limited student per token-level loss (plus SFT on teacher "
            "samples) on a synthetic language with known multimodal next-token distributions; "
            "write zoo.json and SVG plots."
        ),
        epilog="Data-parallel: torchrun --nproc_per_node=K -m reference_impls.zoo [options].",
    )
    parser.add_argument(
        "--losses",
        nargs="+",
        choices=DEFAULT_LOSSES,
        default=list(DEFAULT_LOSSES),
        metavar="LOSS",
        help=f"losses to train (default: all of {', '.join(DEFAULT_LOSSES)})",
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per run")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("build/zoo"), help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seeds and --steps must be >= 1")
    try:
        resolve_device(args.device)
    except RuntimeError as err:  # CUDA requested but absent: a message, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = ZooConfig() if args.steps is None else dataclasses.replace(ZooConfig(), steps=args.steps)
    zoo = run_zoo(
        list(dict.fromkeys(args.losses)),
        range(args.seeds),
        config=cfg,
        device=args.device,
        progress=not args.quiet,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # only rank 0 writes and prints
        return 0
    paths = write_outputs(zoo, args.out)
    if not args.quiet:
        print(format_summary(zoo))
        print(
            f"\n{len(zoo['losses'])} losses x {len(zoo['seeds'])} seeds in "
            f"{zoo['wall_seconds']:.1f} s on {zoo['device']}"
            + (f" ({zoo['world_size']} ranks)" if zoo["world_size"] > 1 else "")
        )
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
