"""Command line of ``python -m reference_impls.zoo`` (and ``kbtool zoo``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reference_impls.demos.run import resolve_device
from reference_impls.zoo.language import ZooConfig
from reference_impls.zoo.run import format_summary, run_zoo, write_outputs
from reference_impls.zoo.sparse import SPARSE_ENTRIES
from reference_impls.zoo.student import DEFAULT_LOSSES


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m reference_impls.zoo`` (and ``kbtool zoo``); exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m reference_impls.zoo",
        description=(
            "Train one capacity-limited student per token-level loss (plus SFT on teacher "
            "samples) on a synthetic language with known multimodal next-token distributions; "
            "write zoo.json (the site draws its charts from it)."
        ),
        epilog="Data-parallel: torchrun --nproc_per_node=K -m reference_impls.zoo [options].",
    )
    parser.add_argument(
        "--losses",
        nargs="+",
        choices=(*DEFAULT_LOSSES, *SPARSE_ENTRIES),
        default=list(DEFAULT_LOSSES),
        metavar="LOSS",
        help=f"losses to train (default: all of {', '.join(DEFAULT_LOSSES)}; also the sparse-"
        f"cache entries {', '.join(SPARSE_ENTRIES)})",
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
