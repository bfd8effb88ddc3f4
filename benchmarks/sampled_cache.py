"""Benchmark: sampled teacher caches (Sparse Logit Sampling) vs top-k caches, storage and step cost.

Part 1 writes real caches with :func:`reference_impls.teacher_cache.write_teacher_cache` for
the synthetic teacher of ``benchmarks/topk_cache.py`` (peaked predictions over ``V`` tokens):
top-k caches (float32 log-probs) and sampled caches with ``N`` draws per token (proposal =
teacher, and one at proposal temperature 2, which also stores two log-probs per id). It reports
bytes per token (file size / tokens) and distinct ids per token, each as a ratio to the top-k
cache with the smallest ``k``, measured in the same run.

Part 2 times forward + backward on ``n`` tokens of each cache's loss from a batch read back
with ``TeacherCache.get_batch`` (``topk_forward_kl`` for top-k, ``sampled_kd_loss`` for
sampled), plus the read itself, as ratios to the dense ``forward_kl`` with the teacher logits in
memory (the floor a cache cannot beat). Medians of ``--reps`` interleaved repetitions.

    python benchmarks/sampled_cache.py            # V = 32000, 2048 tokens
    python benchmarks/sampled_cache.py --quick    # V = 8000, 512 tokens

Prints two tables and writes them as JSON (default ``build/benchmarks/sampled_cache.json``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.topk_cache import dense_baseline, median_seconds, parse_args, synthetic_teacher  # noqa: E402
from reference_impls.teacher_cache import TeacherCache, write_teacher_cache  # noqa: E402
from reference_impls.topk import sampled_kd_loss, topk_forward_kl  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "build" / "benchmarks" / "sampled_cache.json"
FULL = {"v": 32000, "n": 2048, "seq_len": 128}
QUICK = {"v": 8000, "n": 512, "seq_len": 128}
#: (label, write_teacher_cache options); the first is the storage baseline.
CACHES: list[tuple[str, dict[str, Any]]] = [
    ("top-k k=8", {"k": 8}),
    ("top-k k=32", {"k": 32}),
    ("sampled N=16", {"mode": "sampled", "samples": 16}),
    ("sampled N=50", {"mode": "sampled", "samples": 50}),
    ("sampled N=128", {"mode": "sampled", "samples": 128}),
    ("sampled N=50 T_pi=2", {"mode": "sampled", "samples": 50, "proposal_temperature": 2.0}),
]


def storage_rows(grid: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    vocab, n, seq_len = grid["v"], grid["n"], grid["seq_len"]
    teacher = synthetic_teacher(vocab)
    gen = torch.Generator().manual_seed(1)
    sequences = list(torch.randint(vocab, (n // seq_len, seq_len), generator=gen))
    rows = []
    for index, (label, options) in enumerate(CACHES):
        path = tmp / f"cache-{index}.safetensors"
        start = time.perf_counter()
        write_teacher_cache(
            path, teacher, sequences, chunk_size=4, batch_size=4, progress=False, **options
        )
        seconds = time.perf_counter() - start
        with TeacherCache.open(path) as cache:
            ids, values, mask = cache.get_batch(range(len(cache)))
            entries = int(cache.metadata.get("n_entries", cache.k * cache.n_tokens))
        rows.append(
            {
                "cache": label,
                "bytes_per_token": path.stat().st_size / n,
                "ids_per_token": entries / n,
                "write_tokens_per_s": n / seconds,
                "batch": (ids[mask], values[mask]),
            }
        )
    return rows


def timing_rows(
    grid: dict[str, Any], storage: list[dict[str, Any]], reps: int
) -> list[dict[str, Any]]:
    vocab, n = grid["v"], grid["n"]
    student, dense = dense_baseline(vocab, n)

    fns: dict[str, Callable[[], object]] = {"dense forward_kl (logits in memory)": dense}
    for row in storage:
        ids, values = row["batch"]
        loss_fn = topk_forward_kl if row["cache"].startswith("top-k") else sampled_kd_loss

        def step(fn: Callable[..., Tensor] = loss_fn, i: Tensor = ids, v: Tensor = values) -> None:
            fn(student, i, v).backward()
            student.grad = None

        fns[row["cache"]] = step
    seconds = median_seconds(fns, reps)
    return [{"method": name, "ms": 1e3 * s} for name, s in seconds.items()]


def main(argv: list[str] | None = None) -> int:
    args, grid = parse_args(argv, __doc__ or "", DEFAULT_OUT, QUICK, FULL)
    with tempfile.TemporaryDirectory() as tmp:
        storage = storage_rows(grid, Path(tmp))
    timing = timing_rows(grid, storage, args.reps)
    for row in storage:
        row.pop("batch")

    base = storage[0]
    print(
        f"Storage (V = {grid['v']}, {grid['n']} tokens in sequences of {grid['seq_len']}; ids "
        f"int32, log-probs float32, counts int16; ratios to {base['cache']})"
    )
    print(f"{'cache':<22} {'bytes/token':>12} {'ratio':>7} {'ids/token':>10} {'write tok/s':>12}")
    for row in storage:
        print(
            f"{row['cache']:<22} {row['bytes_per_token']:>12.1f} "
            f"{row['bytes_per_token'] / base['bytes_per_token']:>6.2f}x "
            f"{row['ids_per_token']:>10.1f} {row['write_tokens_per_s']:>12,.0f}"
        )
    floor = timing[0]["ms"]
    print(
        f"\nLoss forward + backward on {grid['n']} tokens, V = {grid['v']}, median of {args.reps} "
        f"(torch threads: {torch.get_num_threads()}; ratios to the dense loss)"
    )
    for row in timing:
        print(f"{row['method']:<36} {row['ms']:>9.2f} ms {row['ms'] / floor:>6.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"grid": grid, "storage": storage, "timing": timing}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
