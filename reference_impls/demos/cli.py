"""Command line of ``python -m reference_impls.demos <loss> [--steps N] [--device ...]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from reference_impls.demos.data_selection import main as difference_sampling
from reference_impls.demos.run import resolve_device, run_demo
from reference_impls.demos.tasks import SCENARIOS
from reference_impls.registry import LOSSES, TOKEN_LEVEL_LOSSES

PROG = "python -m reference_impls.demos"

#: Demos with their own command line (not one loss trained by the shared loop): name -> main.
STANDALONE_DEMOS: dict[str, Callable[[Sequence[str]], int]] = {
    "difference_sampling": difference_sampling,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (``sys.argv[1:]`` by default), train, print; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STANDALONE_DEMOS:
        return STANDALONE_DEMOS[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a tiny student with one loss of the registry and print the loss "
        "and the held-out KL(teacher || student).",
        epilog=(
            "Data-parallel: torchrun --nproc_per_node=K -m reference_impls.demos LOSS [options] "
            "(gloo on CPU, nccl on GPU; the global batch is unchanged). Scenarios train any "
            f"token-level loss (--loss): {', '.join(SCENARIOS)}. Demos with their own options "
            f"(see DEMO --help): {', '.join(STANDALONE_DEMOS)}."
        ),
    )
    names = [spec.name for spec in LOSSES]
    parser.add_argument(
        "loss",
        choices=[*names, *SCENARIOS, *STANDALONE_DEMOS],
        metavar="LOSS",
        help=f"a loss of the registry: {', '.join(names)}; or a scenario: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--loss",
        dest="scenario_loss",
        choices=TOKEN_LEVEL_LOSSES,
        default=None,
        metavar="TOKEN_LOSS",
        help="the token-level loss a scenario trains (default forward_kl)",
    )
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=None, help="steps between table rows")
    parser.add_argument(
        "--save", type=Path, default=None, help="write the trained student's state_dict here"
    )
    args = parser.parse_args(argv)
    if args.scenario_loss is not None and args.loss not in SCENARIOS:
        parser.error(f"--loss chooses the loss of a scenario ({', '.join(SCENARIOS)})")
    try:
        resolve_device(args.device)
    except RuntimeError as err:  # CUDA requested but absent: a message, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run_demo(
        args.loss,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        log_every=args.log_every,
        save=args.save,
        loss=args.scenario_loss,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # the group is gone by now: read torchrun's env
        print(
            f"done in {result.seconds:.1f} s: {result.loss_label} {result.losses[0]:.4f} -> "
            f"{result.losses[-1]:.4f}, KL(teacher||student) {result.divergences[0]:.4f} -> "
            f"{result.divergences[-1]:.4f}"
        )
    return 0
