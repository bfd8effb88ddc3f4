r"""Run the zoo: train every (loss, seed), summarise over seeds, check claims, write zoo.json."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from reference_impls.demos.ddp import dist_context, distributed
from reference_impls.demos.loop import train_loop
from reference_impls.demos.run import resolve_device
from reference_impls.demos.world import Task
from reference_impls.jobs import Progress, write_text_atomic
from reference_impls.registry import SPECS
from reference_impls.zoo.claims import evaluate_claims
from reference_impls.zoo.language import Language, ZooConfig, build_language
from reference_impls.zoo.metrics import distribution_metrics
from reference_impls.zoo.results import (
    COLUMNS,
    HALLUCINATION_THRESHOLD,
    SCHEMA,
    Curve,
    LossResult,
    Run,
    ZooReport,
    run_value,
)
from reference_impls.zoo.sparse import SPARSE_ENTRIES, entry_params
from reference_impls.zoo.student import BASELINE, DEFAULT_LOSSES, ZOO_LOSSES, build_zoo_task


@torch.no_grad()
def evaluate(task: Task, language: Language) -> dict[str, float]:
    """:func:`~reference_impls.zoo.metrics.distribution_metrics` of the student, held out."""
    ids = language.held_out_ids
    log_q = task.student_logprobs(language.contexts(ids))
    return distribution_metrics(language.log_probs[ids], log_q, language.modes[ids])


def run_one(loss: str, seed: int, cfg: ZooConfig, language: Language, device: torch.device) -> Run:
    """Train one student with ``loss`` and seed ``seed``; return its metrics and traces.

    Besides the held-out metrics: ``ms_per_step`` (wall time of an optimiser step, evaluation
    excluded), the per-step gradient norm's maximum and median, and a learning curve (logged
    training loss and held-out forward KL at ``n_curve_points + 1`` points).
    """
    task = build_zoo_task(loss, cfg, language, device, seed)
    curve: Curve = {"step": [], "train_loss": [], "forward_kl": []}

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


def summarize(runs: Sequence[Run]) -> tuple[dict[str, float], dict[str, float]]:
    """``(mean, std)`` of every column of :data:`~reference_impls.zoo.results.COLUMNS`."""
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for column in COLUMNS:
        key = column["key"]
        mean[key], std[key] = _spread([run_value(r, key) for r in runs])
    return mean, std


def _loss_params(loss: str, cfg: ZooConfig, language: Language) -> dict[str, object]:
    """The loss's parameters as recorded in ``zoo.json`` (measured or scheduled ones by their
    function's docstring)."""
    if loss in SPARSE_ENTRIES:
        entry = SPARSE_ENTRIES[loss]
        return {
            "loss": entry.loss,
            **SPECS[entry.loss].params,
            **entry_params(loss, language, cfg.n_pool),
        }
    spec = SPECS[loss]
    params: dict[str, object] = dict(spec.params)
    if spec.fit_params is not None:
        params["fit_params"] = f"{spec.fit_params.__doc__ or spec.fit_params.__name__}".strip()
    if spec.schedule is not None:
        params["schedule"] = f"{spec.schedule.__doc__ or spec.schedule.__name__}".strip()
    return params


def run_zoo(
    losses: Sequence[str] = DEFAULT_LOSSES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    config: ZooConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> ZooReport:
    """Train every (loss, seed), summarise over seeds, check the claims; return the report.

    The report is what ``zoo.json`` holds (see :func:`write_outputs`). Under ``torchrun``
    every rank returns it; use :func:`reference_impls.demos.ddp.dist_context` to write once.
    """
    unknown = [lo for lo in losses if lo not in ZOO_LOSSES]
    if unknown or not losses:
        raise ValueError(f"losses must be a non-empty subset of {sorted(ZOO_LOSSES)}: {unknown}")
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
            results: dict[str, LossResult] = {}
            for loss in losses:
                runs = []
                for seed in seeds:
                    runs.append(run_one(loss, seed, cfg, language, rank_dev))
                    bar.advance(f"{loss} seed {seed}")
                mean, std = summarize(runs)
                results[loss] = {
                    "kind": "black-box" if loss == BASELINE else "white-box",
                    "params": _loss_params(loss, cfg, language),
                    "mean": mean,
                    "std": std,
                    "runs": runs,
                }
            bar.close()
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
                (language.log_probs[held].exp() < HALLUCINATION_THRESHOLD).sum(-1).float().mean()
            ),
        },
        "device": str(rank_dev),
        "world_size": ctx.world_size,
        "torch": torch.__version__,
        "losses": list(losses),
        "seeds": list(seeds),
        "columns": list(COLUMNS),
        "metric_definitions": {c["key"]: c["definition"] for c in COLUMNS},
        "results": results,
        "claims": evaluate_claims(results, len(seeds)),
        "wall_seconds": time.perf_counter() - start,
    }


def write_outputs(zoo: ZooReport, out: Path) -> list[Path]:
    """Write ``zoo.json`` into ``out`` atomically (the site draws the charts); return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "zoo.json"
    write_text_atomic(path, json.dumps(zoo, indent=1, sort_keys=False) + "\n")
    return [path]


def format_summary(zoo: ZooReport) -> str:
    """A plain-text table of the means and the claim verdicts, for the terminal."""
    shown = [c for c in zoo["columns"] if c["header"]]
    lines = [f"{'loss':<22}" + "".join(f"{c['header']:>15}" for c in shown)]
    for loss in zoo["losses"]:
        mean = zoo["results"][loss]["mean"]
        lines.append(f"{loss:<22}" + "".join(f"{mean[c['key']]:>15.4f}" for c in shown))
    lines.append("")
    for claim in zoo["claims"]:
        verdict = {True: "reproduced", False: "NOT reproduced", None: "not run"}[
            claim["reproduced"]
        ]
        seeds = (
            f" ({claim['seeds_agreeing']}/{claim['n_seeds']} seeds)"
            if "n_seeds" in claim and "seeds_agreeing" in claim
            else ""
        )
        lines.append(f"{verdict:>15}{seeds}: {claim['id']}")
    return "\n".join(lines)
