"""Benchmark: full-logits distillation loss vs the fused, chunked lm-head loss (and Liger's).

Each configuration (method x N x V) runs in a fresh Python process so that its peak memory is
its own: whole-process peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU. Every
measurement is forward + backward of the student's lm head and loss; the time is the median
of ``--reps`` repetitions (compiled variants get one extra, untimed, compiling run first).

Methods:

* ``full``: ``REGISTRY[loss](h_s @ W_s.T, h_t @ W_t.T)`` then ``backward`` (the baseline);
* ``fused`` / ``fused_compiled``: :func:`reference_impls.fused.fused_linear_distill`, eager
  and with ``compile=True``, at ``--chunk-size`` rows per chunk; the default ``auto`` keeps a
  chunk near 32M logits (128 MiB per float32 tensor; the fused path holds two): 1024 rows at
  V = 32000, 256 at V = 128256;
* ``liger`` / ``liger_compiled``: ``liger_kernel.chunked_loss.LigerFusedLinearJSDLoss`` with
  ``compiled=False`` / ``True`` at its default chunk size and at ours (only if liger-kernel
  is importable; it is an optional dependency and only runs for ``--loss generalized_jsd``,
  the loss it implements, with the hard-label weight set to 0).

Usage::

    python benchmarks/fused_loss.py          # N in {1024, 2048, 4096}, V in {32000, 128256}
    python benchmarks/fused_loss.py --quick  # small grid for development

Prints a table with ratios to the full-logits baseline and writes it as JSON (default
``build/benchmarks/fused_loss.json``, read by the site).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "benchmarks" / "fused_loss.json"
LIGER_DEFAULT_CHUNK = 1024  # LigerFusedLinearJSDLoss(chunk_size=1024) in liger-kernel 0.8
FULL_GRID: dict[str, Any] = {"n": [1024, 2048, 4096], "v": [32000, 128256], "h": 1024}
QUICK_GRID: dict[str, Any] = {"n": [1024, 2048], "v": [8000, 32000], "h": 256}
TARGET_N, TARGET_V = 2048, 128256
AUTO_CHUNK_LOGITS = 2**25  # "auto" chunk: about 32M logits (128 MiB in float32) per chunk


def auto_chunk_size(v: int) -> int:
    """Largest power of two in [64, 1024] with chunk x V <= 2**25 (1024 at V=32000, 256 at 128k)."""
    chunk = 1024
    while chunk > 64 and chunk * v > AUTO_CHUNK_LOGITS:
        chunk //= 2
    return chunk


@dataclass(frozen=True)
class Spec:
    """One measured configuration, passed to the worker process as JSON."""

    method: str  # full | fused | fused_compiled | liger | liger_compiled
    n: int
    v: int
    h: int
    chunk_size: int | None
    loss: str
    beta: float
    temperature: float
    reps: int
    device: str
    dtype: str


# --------------------------------------------------------------------------- worker side


def _peak_memory_bytes(device: str) -> int:
    """Whole-process peak RSS on CPU (Linux reports KiB), allocator peak on CUDA."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_worker(spec: Spec) -> dict[str, Any]:
    """Build the inputs, run forward + backward ``reps`` times, return times and peak memory."""
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from reference_impls import REGISTRY
    from reference_impls.fused import fused_linear_distill

    dtype = getattr(torch, spec.dtype)
    dev = torch.device(spec.device)
    gen = torch.Generator().manual_seed(0)
    scale = spec.h**-0.5  # logits of unit scale

    def rand(*shape: int, s: float = 1.0) -> torch.Tensor:
        # in place: no transient copy of the weights inflates the common baseline
        return torch.randn(*shape, generator=gen).mul_(s).to(device=dev, dtype=dtype)

    h_s = rand(spec.n, spec.h).requires_grad_()
    w_s = rand(spec.v, spec.h, s=scale).requires_grad_()
    h_t = rand(spec.n, spec.h)
    w_t = rand(spec.v, spec.h, s=2 * scale)  # a sharper teacher
    labels = torch.randint(0, spec.v, (spec.n,), generator=gen).to(dev)
    params: dict[str, Any] = {"beta": spec.beta} if spec.loss == "generalized_jsd" else {}

    if spec.method == "full":
        loss_fn = REGISTRY[spec.loss]

        def step() -> torch.Tensor:
            with torch.no_grad():
                z_t = h_t @ w_t.T
            out: torch.Tensor = loss_fn(h_s @ w_s.T, z_t, temperature=spec.temperature, **params)
            return out

    elif spec.method in ("fused", "fused_compiled"):
        compiled = spec.method == "fused_compiled"
        chunk = spec.chunk_size or 1024

        def step() -> torch.Tensor:
            return fused_linear_distill(
                h_s,
                w_s,
                h_t,
                w_t,
                loss=spec.loss,
                temperature=spec.temperature,
                chunk_size=chunk,
                compile=compiled,
                **params,
            )

    elif spec.method in ("liger", "liger_compiled"):
        from liger_kernel.chunked_loss import (  # type: ignore[import-untyped]
            LigerFusedLinearJSDLoss,
        )

        liger = LigerFusedLinearJSDLoss(
            weight_hard_loss=0.0,
            weight_soft_loss=1.0,
            beta=spec.beta,
            temperature=spec.temperature,
            compiled=spec.method == "liger_compiled",
            chunk_size=spec.chunk_size or LIGER_DEFAULT_CHUNK,
        )

        def step() -> torch.Tensor:
            out: torch.Tensor = liger(h_s, w_s, h_t, w_t, labels)
            return out

    else:
        raise ValueError(f"unknown method {spec.method!r}")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    setup_memory = _peak_memory_bytes(spec.device)
    warmup = 1 if spec.method.endswith("_compiled") else 0
    times: list[float] = []
    first_run = None
    value = float("nan")
    for i in range(warmup + spec.reps):
        h_s.grad = None
        w_s.grad = None
        sync()
        start = time.perf_counter()
        loss = step()
        torch.autograd.backward(loss)
        sync()
        elapsed = time.perf_counter() - start
        value = float(loss.detach())
        del loss
        if i == 0:
            first_run = elapsed
        if i >= warmup:
            times.append(elapsed)
    return {
        "times_s": times,
        "median_s": statistics.median(times),
        "first_run_s": first_run,
        "peak_bytes": _peak_memory_bytes(spec.device),
        "setup_peak_bytes": setup_memory,
        "loss_value": value,
        "grad_w_norm": float(w_s.grad.float().norm()) if w_s.grad is not None else None,
    }


# --------------------------------------------------------------------------- driver side


def _available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); a large number elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 50


def _estimate_bytes(spec: Spec) -> int:
    """Rough upper estimate of a configuration's peak, to skip what cannot fit.

    Calibrated on this benchmark's CPU runs: the full-logits path keeps about twelve
    ``N x V`` float32 tensors alive (logits, log-probabilities, the mixture and their
    gradients); Liger's chunked path about as many ``chunk x V`` tensors (ours fewer), plus
    the weights and their gradient.
    """
    item = 2 if spec.dtype in ("bfloat16", "float16") else 4
    weights = 4 * spec.v * spec.h * item  # W_s, W_t, grad W_s and one transient copy
    rows = spec.n if spec.method == "full" else min(spec.chunk_size or spec.n, spec.n)
    return 600 * 2**20 + weights + 12 * rows * spec.v * 4


def _run_in_fresh_process(spec: Spec, timeout: float) -> dict[str, Any]:
    """Run one configuration in a new interpreter and parse its JSON answer."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"no answer within {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        status = "killed (out of memory?)" if proc.returncode < 0 else "error"
        return {"status": status, "detail": " | ".join(tail), "returncode": proc.returncode}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["status"] = "ok"
    return result


def _liger_version() -> str | None:
    """liger-kernel's version if it imports (in a subprocess: its import is slow), else None."""
    code = (
        "import importlib.metadata as m, liger_kernel.chunked_loss as c; "
        "c.LigerFusedLinearJSDLoss; print(m.version('liger-kernel'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else None


def _our_chunk(args: argparse.Namespace, v: int) -> int:
    """The fused path's chunk size for vocabulary ``v``: ``--chunk-size`` or the auto rule."""
    return auto_chunk_size(v) if args.chunk_size == "auto" else int(args.chunk_size)


def _methods(args: argparse.Namespace, v: int, liger: bool) -> list[tuple[str, int | None]]:
    """(method, chunk size) pairs to measure for one (N, V) cell."""
    ours = _our_chunk(args, v)
    out: list[tuple[str, int | None]] = [("full", None), ("fused", ours)]
    if not args.no_compile:
        out.append(("fused_compiled", ours))
    if liger:
        chunks = sorted({LIGER_DEFAULT_CHUNK, ours})
        for method in ("liger", "liger_compiled"):
            if method == "liger_compiled" and args.no_compile:
                continue
            out.extend((method, c) for c in chunks)
    return out


def _fmt_bytes(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _print_table(rows: list[dict[str, Any]]) -> None:
    """Human-readable table: time and peak memory with ratios to the full-logits baseline.

    ``1st s`` is the first, untimed run of a compiled variant (it includes compilation).
    """
    header = (
        f"{'N':>5} {'V':>7} {'method':<15} {'chunk':>5} {'time s':>8} {'x full':>7} "
        f"{'peak MiB':>9} {'x full':>7} {'1st s':>7}  status"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        compiled = r["method"].endswith("_compiled")
        print(
            f"{r['n']:>5} {r['v']:>7} {r['method']:<15} {r['chunk_size'] or '-':>5} "
            f"{_num(r.get('median_s'), '.2f'):>8} {_num(r.get('time_ratio'), '.2f'):>7} "
            f"{_fmt_bytes(r.get('peak_bytes')):>9} {_num(r.get('memory_ratio'), '.2f'):>7} "
            f"{_num(r.get('first_run_s') if compiled else None, '.1f'):>7}  "
            f"{r['status']}{(': ' + r['detail']) if r.get('detail') else ''}"
        )


def _check_targets(rows: list[dict[str, Any]], chunk: int) -> list[dict[str, Any]]:
    """Evaluate the issue's targets on the (TARGET_N, TARGET_V) cell, where it was measured."""
    cell = {
        (r["method"], r["chunk_size"]): r
        for r in rows
        if r["n"] == TARGET_N and r["v"] == TARGET_V and r["status"] == "ok"
    }
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, strict: bool = False) -> None:
        ok = None if value is None else (value < limit if strict else value <= limit)
        checks.append({"target": name, "value": value, "limit": limit, "met": ok})

    full, fused = cell.get(("full", None)), cell.get(("fused", chunk))
    comp = cell.get(("fused_compiled", chunk))
    if fused and full:
        add("fused peak memory / full", _ratio(fused["peak_bytes"], full["peak_bytes"]), 0.25)
        add("fused eager time / full", _ratio(fused["median_s"], full["median_s"]), 1.2)
    if comp and full:
        add("fused compiled time / full", _ratio(comp["median_s"], full["median_s"]), 1.0, True)
    for ours, theirs in ((fused, "liger"), (comp, "liger_compiled")):
        for c in sorted({LIGER_DEFAULT_CHUNK, chunk}):
            other = cell.get((theirs, c))
            if ours and other:
                label = f"{ours['method']} / {theirs} (chunk {c})"
                add(f"{label} time", _ratio(ours["median_s"], other["median_s"]), 1.0)
                add(f"{label} memory", _ratio(ours["peak_bytes"], other["peak_bytes"]), 1.0)
    return checks


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the table, write the JSON; exit code 0 even if targets are missed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small grid for development")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument(
        "--chunk-size",
        default="auto",
        help="chunk size of the fused path, or 'auto': 2**25 // V as a power of two in [64, 1024]",
    )
    p.add_argument("--loss", default="generalized_jsd", help="token-level loss (REGISTRY name)")
    p.add_argument("--beta", type=float, default=0.5, help="beta of generalized_jsd")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--n", type=int, nargs="*", help="override the grid's N values")
    p.add_argument("--v", type=int, nargs="*", help="override the grid's V values")
    p.add_argument("--methods", nargs="*", help="only these methods (full, fused, ...)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    p.add_argument("--no-liger", action="store_true", help="skip liger-kernel even if present")
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="skip configurations estimated above this (default: 85%% of available)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="per-configuration timeout (s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(_run_worker(Spec(**json.loads(args.worker)))))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    grid: dict[str, Any] = dict(QUICK_GRID if args.quick else FULL_GRID)
    if args.n:
        grid["n"] = args.n
    if args.v:
        grid["v"] = args.v
    liger_version = None if args.no_liger else _liger_version()
    use_liger = liger_version is not None and args.loss == "generalized_jsd"
    if liger_version is None:
        print("liger-kernel: not importable (or --no-liger); its rows are skipped")
    elif not use_liger:
        print(f"liger-kernel {liger_version}: only implements generalized_jsd; skipped")
    else:
        print(f"liger-kernel {liger_version}: at its default chunk size and at ours")
    budget = (
        int(args.memory_budget_gb * 2**30)
        if args.memory_budget_gb
        else int(0.85 * _available_memory_bytes())
    )
    rows: list[dict[str, Any]] = []
    for v in grid["v"]:
        for n in grid["n"]:
            baseline: dict[str, Any] | None = None
            for method, chunk in _methods(args, v, use_liger):
                if args.methods and method not in args.methods:
                    continue
                spec = Spec(
                    method,
                    n,
                    v,
                    grid["h"],
                    chunk,
                    args.loss,
                    args.beta,
                    args.temperature,
                    args.reps,
                    device,
                    args.dtype,
                )
                row: dict[str, Any] = asdict(spec)
                estimate = _estimate_bytes(spec)
                if device == "cpu" and estimate > budget:
                    gib = f"{estimate / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB"
                    row.update(status="skipped", detail=f"does not fit: estimated {gib}")
                else:
                    print(f"running {method} N={n} V={v} chunk={chunk} ...", flush=True)
                    row.update(_run_in_fresh_process(spec, args.timeout))
                if method == "full" and row["status"] == "ok":
                    baseline = row
                if row["status"] == "ok" and baseline is not None:
                    row["time_ratio"] = _ratio(row["median_s"], baseline["median_s"])
                    row["memory_ratio"] = _ratio(row["peak_bytes"], baseline["peak_bytes"])
                    row["loss_rel_diff"] = abs(row["loss_value"] - baseline["loss_value"]) / max(
                        abs(baseline["loss_value"]), 1e-30
                    )
                rows.append(row)

    print()
    _print_table(rows)
    checks = _check_targets(rows, _our_chunk(args, TARGET_V))
    if checks:
        print(f"\nTargets at N={TARGET_N}, V={TARGET_V}:")
        for c in checks:
            value = "-" if c["value"] is None else f"{c['value']:.2f}"
            verdict = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
            print(f"  {c['target']:<48} {value:>6} (limit {c['limit']}) {verdict}")
    report = {
        "benchmark": "fused_loss",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "memory_metric": "cuda max_memory_allocated" if device != "cpu" else "peak RSS",
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "device": device,
            "liger_kernel": liger_version,
        },
        "settings": {
            "quick": args.quick,
            "reps": args.reps,
            "loss": args.loss,
            "beta": args.beta,
            "temperature": args.temperature,
            "dtype": args.dtype,
            "h": grid["h"],
            "chunk_size": args.chunk_size,
            "chunk_size_by_v": {str(v): _our_chunk(args, v) for v in grid["v"]},
            "liger_default_chunk": LIGER_DEFAULT_CHUNK,
        },
        "rows": rows,
        "targets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")  # then rename: never half-written
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
