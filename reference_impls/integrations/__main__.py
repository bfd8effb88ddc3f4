"""``python -m reference_impls.integrations LOSS``: distil a tiny teacher with the HF Trainer.

Runs :func:`reference_impls.integrations.tiny.run_tiny_hf_demo` and prints the held-out
KL(teacher || student) before and after (rank 0 only under ``accelerate launch``). ``--json``
prints the whole result. Needs the ``hf`` extra: ``pip install 'kd-atlas[hf]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--param takes NAME=NUMBER, got {text!r}")
    try:
        return name, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--param {name}: {value!r} is not a number") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_impls.integrations")
    parser.add_argument("loss", help="a registry loss name, e.g. forward_kl, generalized_jsd")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--family", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--fused", action="store_true", help="chunked lm-head loss")
    parser.add_argument("--alpha", type=float, default=0.0, help="hard-label CE weight")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--on-policy-ratio", type=float, default=0.0)
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=X")
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--grad-accum", type=int, default=1, help="accumulation steps")
    parser.add_argument("--ragged", action="store_true", help="sequences of different lengths")
    parser.add_argument("--save", default=None, help="write the student's state_dict here")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    try:
        from reference_impls.integrations.tiny import run_tiny_hf_demo

        result = run_tiny_hf_demo(
            args.loss,
            args.steps,
            family=args.family,
            fused=args.fused,
            alpha=args.alpha,
            temperature=args.temperature,
            on_policy_ratio=args.on_policy_ratio,
            loss_params=dict(args.param),
            batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            ragged=args.ragged,
            save=args.save,
        )
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if _rank() == 0:
        print(json.dumps(result, indent=1) if args.json else _summary(result))
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _summary(result: dict[str, Any]) -> str:
    return (
        f"{result['loss']} on tiny {result['family']} ({result['world_size']} process(es), "
        f"{result['steps']} steps): held-out KL(teacher || student) "
        f"{result['kl_before']:.4f} -> {result['kl_after']:.4f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
