"""Benchmark: what a teacher top-k cache costs on disk and at training time vs dense logits.

Part 1 (storage) writes real caches with :func:`reference_impls.teacher_cache.write_teacher_cache`
for a synthetic teacher (random embeddings and LM head, vocabulary ``V``) and reports the bytes
stored per token (file size / tokens, header and offsets included) for several ``k`` and both
log-prob dtypes, next to what dense teacher logits would take per token (``V`` x 4 bytes in
float32, ``V`` x 2 in bfloat16) for common vocabulary sizes.

Part 2 (training time) measures forward + backward of the loss on ``N`` tokens:

* ``dense forward_kl``: ``forward_kl(student_logits, teacher_logits)`` with the teacher logits
  already in memory, i.e. *without* the teacher forward that online distillation also pays;
* ``topk_forward_kl`` (bucket and renormalize) from a batch of ``N`` tokens of top-k ids and
  log-probs, plus the time to read that batch from the cache with ``TeacherCache.get_batch``.

The time is the median of ``--reps`` repetitions after one warm-up, interleaved across the
methods so that load changes on a shared machine affect them alike. Usage::

    python benchmarks/topk_cache.py            # V = 32000, N = 2048 tokens, k in {8, 32, 64}
    python benchmarks/topk_cache.py --quick    # V = 8000, N = 512, k in {8, 32}

Prints two tables and writes them as JSON (default ``build/benchmarks/topk_cache.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
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

from reference_impls.kl import forward_kl  # noqa: E402
from reference_impls.teacher_cache import TeacherCache, write_teacher_cache  # noqa: E402
from reference_impls.topk import topk_forward_kl  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "build" / "benchmarks" / "topk_cache.json"
FULL = {"v": 32000, "n": 2048, "seq_len": 128, "ks": [8, 32, 64]}
QUICK = {"v": 8000, "n": 512, "seq_len": 128, "ks": [8, 32]}
DENSE_VOCABS = [32000, 128256]


def synthetic_teacher(vocab: int, hidden: int = 64, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """Embeddings and an LM head scaled so that predictions are peaked, like a trained LM."""
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(vocab, hidden, generator=gen)
    head = torch.randn(hidden, vocab, generator=gen) / hidden**0.5 * 3.0
    return lambda ids: embed[ids] @ head


def median_seconds(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median time of each function; the repetitions are interleaved (every function once per
    round, in rotating order) so that load changes on a shared machine hit all of them alike."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def storage_rows(grid: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    vocab, n, seq_len = grid["v"], grid["n"], grid["seq_len"]
    teacher = synthetic_teacher(vocab)
    gen = torch.Generator().manual_seed(1)
    sequences = list(torch.randint(vocab, (n // seq_len, seq_len), generator=gen))
    rows = []
    for k in grid["ks"]:
        for dtype in (torch.float32, torch.bfloat16):
            path = tmp / f"k{k}-{dtype}.safetensors".replace("torch.", "")
            start = time.perf_counter()
            write_teacher_cache(
                path,
                teacher,
                sequences,
                k=k,
                chunk_size=4,
                batch_size=4,
                logprobs_dtype=dtype,
                progress=False,
            )
            seconds = time.perf_counter() - start
            size = path.stat().st_size
            rows.append(
                {
                    "k": k,
                    "logprobs": str(dtype).replace("torch.", ""),
                    "tokens": n,
                    "file_bytes": size,
                    "bytes_per_token": size / n,
                    "write_tokens_per_s": n / seconds,
                    "path": str(path),
                }
            )
    return rows


def dense_baseline(vocab: int, n: int) -> tuple[Tensor, Callable[[], None]]:
    """A student ``[n, V]`` and the baseline step: dense forward KL on in-memory teacher logits."""
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(n, vocab, generator=gen).requires_grad_()
    teacher_logits = torch.randn(n, vocab, generator=gen) * 3

    def dense() -> None:
        forward_kl(student, teacher_logits).backward()
        student.grad = None

    return student, dense


def timing_rows(
    grid: dict[str, Any], storage: list[dict[str, Any]], reps: int
) -> list[dict[str, Any]]:
    vocab, n = grid["v"], grid["n"]
    student, dense = dense_baseline(vocab, n)

    fns: dict[str, Callable[[], object]] = {"dense": dense}
    rows = [
        {
            "method": "dense forward_kl (teacher logits in memory)",
            "key": "dense",
            "k": None,
            "read_key": None,
            "teacher_bytes_per_step": student.numel() * 4,  # teacher logits: same shape
        }
    ]
    for entry in storage:
        if entry["logprobs"] != "float32":
            continue
        cache = TeacherCache.open(entry["path"], verify=False)

        def read(cache: TeacherCache = cache) -> tuple[Tensor, Tensor, Tensor]:
            return cache.get_batch(range(len(cache)))

        fns[f"read k={entry['k']}"] = read
        ids, lps, _ = read()
        ids, lps = ids.reshape(n, -1), lps.reshape(n, -1)
        for tail in ("bucket", "renormalize"):

            def sparse(tail: str = tail, ids: Tensor = ids, lps: Tensor = lps) -> None:
                topk_forward_kl(student, ids, lps, tail=tail).backward()  # type: ignore[arg-type]
                student.grad = None

            key = f"{tail} k={entry['k']}"
            fns[key] = sparse
            rows.append(
                {
                    "method": f"topk_forward_kl {tail}",
                    "key": key,
                    "k": entry["k"],
                    "read_key": f"read k={entry['k']}",
                    "teacher_bytes_per_step": ids.numel() * 4 + lps.numel() * 4,
                }
            )
    seconds = median_seconds(fns, reps)
    for row in rows:
        row["loss_ms"] = 1e3 * seconds[row.pop("key")]
        read_key = row.pop("read_key")
        row["read_ms"] = 1e3 * seconds[read_key] if read_key else 0.0
    return rows


def parse_args(
    argv: list[str] | None,
    doc: str,
    default_out: Path,
    quick: dict[str, Any],
    full: dict[str, Any],
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The cache benchmarks' shared options (--quick, --reps, --out, --threads); the grid to run."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for development")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=default_out, help="JSON output path")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args, quick if args.quick else full


def main(argv: list[str] | None = None) -> int:
    args, grid = parse_args(argv, __doc__ or "", DEFAULT_OUT, QUICK, FULL)
    with tempfile.TemporaryDirectory() as tmp:
        storage = storage_rows(grid, Path(tmp))
        timing = timing_rows(grid, storage, args.reps)
    for row in storage:
        row.pop("path")

    print(
        f"Storage per token (V = {grid['v']}, {grid['n']} tokens in sequences of "
        f"{grid['seq_len']}; ids int32; file size incl. header and offsets)"
    )
    print(f"{'k':>4} {'logprobs':>9} {'bytes/token':>12} {'write tok/s':>12}")
    for row in storage:
        print(
            f"{row['k']:>4} {row['logprobs']:>9} {row['bytes_per_token']:>12.1f} "
            f"{row['write_tokens_per_s']:>12,.0f}"
        )
    dense_rows = [{"vocab": v, "float32": 4 * v, "bfloat16": 2 * v} for v in DENSE_VOCABS]
    for row in dense_rows:
        print(
            f"dense logits, V = {row['vocab']}: {row['float32']:,} bytes/token in float32, "
            f"{row['bfloat16']:,} in bfloat16"
        )

    print(
        f"\nTraining-time cost per step, forward + backward, N = {grid['n']} tokens, "
        f"V = {grid['v']}, median of {args.reps} (torch threads: {torch.get_num_threads()})"
    )
    print(f"{'method':<45} {'k':>4} {'read ms':>9} {'loss ms':>9} {'teacher MB/step':>16}")
    base = timing[0]["loss_ms"]
    for row in timing:
        k = "" if row["k"] is None else row["k"]
        ratio = f"  ({(row['read_ms'] + row['loss_ms']) / base:.2f}x dense)"
        print(
            f"{row['method']:<45} {k:>4} {row['read_ms']:>9.2f} {row['loss_ms']:>9.2f} "
            f"{row['teacher_bytes_per_step'] / 1e6:>16.2f}{ratio}"
        )
    print(
        "(online dense distillation also runs the teacher forward every step; the cache "
        "pays it once)"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "grid": grid,
                "storage": storage,
                "dense_bytes_per_token": dense_rows,
                "timing": timing,
                "threads": torch.get_num_threads(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
