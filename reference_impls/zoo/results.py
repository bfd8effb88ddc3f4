"""The schema of ``zoo.json``, the loss zoo's only output, and the zoo's metric columns.

The site (``kbtool/site/zoo.py``) reads ``zoo.json`` with these types; the table columns are
also written into the file (``columns``), so the site shows what the zoo measured without
importing torch. This module imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

SCHEMA = "kd-atlas/zoo/1"
#: Teacher probability below which a token counts as one the teacher rules out.
HALLUCINATION_THRESHOLD = 1e-3
#: Student probability a teacher mode needs to count as recalled.
RECALL_THRESHOLD = 0.05

Best = Literal["min", "max", "one", "none"]


class Column(TypedDict):
    """A measured quantity: key, table header (``""``: not in the table), best value, meaning."""

    key: str
    header: str
    best: Best
    digits: int
    definition: str


def _column(key: str, header: str, best: Best, definition: str, digits: int = 3) -> Column:
    return {"key": key, "header": header, "best": best, "digits": digits, "definition": definition}


#: The held-out metrics of :func:`reference_impls.zoo.metrics.distribution_metrics`, in order.
METRICS: tuple[Column, ...] = (
    _column(
        "forward_kl",
        "KL(p||q) ↓",
        "min",
        "KL(p||q) = sum_v p_v log(p_v/q_v), mean over held-out contexts (nats)",
    ),
    _column(
        "reverse_kl",
        "KL(q||p) ↓",
        "min",
        "KL(q||p) = sum_v q_v log(q_v/p_v), mean over held-out contexts (nats)",
    ),
    _column("student_entropy", "", "none", "H(q), mean over held-out contexts (nats)"),
    _column("teacher_entropy", "", "none", "H(p), mean over held-out contexts (nats)"),
    _column(
        "entropy_ratio",
        "H(q)/H(p) →1",
        "one",
        "mean H(q) / mean H(p): < 1 sharper than the teacher, > 1 flatter",
    ),
    _column(
        "hallucination_mass",
        "halluc. mass ↓",
        "min",
        f"student mass on tokens the teacher gives p < {HALLUCINATION_THRESHOLD:g}, "
        "mean over held-out contexts",
    ),
    _column(
        "top1_agreement",
        "top-1 agree ↑",
        "max",
        "share of held-out contexts where argmax q = argmax p",
    ),
    _column(
        "mode_recall",
        "mode recall ↑",
        "max",
        f"share of teacher modes (pooled over contexts) where the student puts q >= "
        f"{RECALL_THRESHOLD:g}",
    ),
    _column(
        "head_gap", "", "none", "sum over the teacher modes of |p_v - q_v|, mean over contexts"
    ),
    _column("tail_gap", "", "none", "sum over the other tokens of |p_v - q_v|, mean over contexts"),
)

#: Per-run quantities summarised across seeds besides the held-out metrics.
RUN_QUANTITIES: tuple[Column, ...] = (
    _column(
        "ms_per_step",
        "ms / step",
        "none",
        "wall time of one optimiser step in milliseconds (evaluation excluded)",
        digits=2,
    ),
    _column(
        "grad_norm_max",
        "",
        "none",
        "largest global L2 norm of the gradient over the training steps",
    ),
)

#: Every column, metrics first; the table shows those with a header.
COLUMNS: tuple[Column, ...] = (*METRICS, *RUN_QUANTITIES)
METRIC_DEFINITIONS: dict[str, str] = {c["key"]: c["definition"] for c in METRICS}


class Curve(TypedDict):
    """Learning curve: logged training loss and held-out forward KL at a few steps."""

    step: list[int]
    train_loss: list[float]
    forward_kl: list[float]


class Run(TypedDict):
    """One (loss, seed) training run."""

    seed: int
    metrics: dict[str, float]
    ms_per_step: float
    grad_norm_max: float
    grad_norm_median: float
    curve: Curve


class LossResult(TypedDict):
    """One loss over all seeds: mean and sample std of every column, and the runs."""

    kind: str
    params: dict[str, object]
    mean: dict[str, float]
    std: dict[str, float]
    runs: list[Run]


class ClaimVerdict(TypedDict):
    """A claim and its verdict (``reproduced`` is ``None`` when a loss it needs was not run)."""

    id: str
    statement: str
    sources: list[str]
    criterion: str
    reproduced: bool | None
    note: NotRequired[str]
    seeds_agreeing: NotRequired[int]
    n_seeds: NotRequired[int]
    evidence: NotRequired[dict[str, float]]


class LanguageSummary(TypedDict):
    """The synthetic language as measured on the held-out contexts."""

    vocab_size: int
    contexts: int
    held_out_contexts: int
    teacher_entropy: float
    modes_per_context: float
    ruled_out_tokens_per_context: float


class ZooReport(TypedDict):
    """The whole of ``zoo.json``."""

    schema: str
    config: dict[str, object]
    language: LanguageSummary
    device: str
    world_size: int
    torch: str
    losses: list[str]
    seeds: list[int]
    columns: list[Column]
    metric_definitions: dict[str, str]
    results: dict[str, LossResult]
    claims: list[ClaimVerdict]
    wall_seconds: float


def run_value(run: Run, key: str) -> float:
    """A held-out metric or a per-run quantity (``ms_per_step``, ...) of one run."""
    if key in run["metrics"]:
        return run["metrics"][key]
    value = run.get(key)
    if not isinstance(value, int | float):
        raise KeyError(f"a zoo run has no quantity {key!r}")
    return float(value)
