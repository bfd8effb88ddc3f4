"""The ``kbtool run`` and ``kbtool zoo`` commands: a method's demo, or the loss zoo.

Plain functions that :mod:`kbtool.cli.app` registers. torch (and, with ``--hf``,
transformers) are imported only when a command runs, so ``import kbtool`` stays light.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.common import CliError, RootOption, out
from kbtool.core.knowledge_base import load
from kbtool.core.model import Method

DEVICES = ("auto", "cpu", "cuda")


def run_cmd(
    method: Annotated[str, typer.Argument(help="Method id (or a loss name from reference_impls).")],
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the demo's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    hf: Annotated[
        bool,
        typer.Option(
            "--hf", help="Train tiny Hugging Face models with the DistillationTrainer instead."
        ),
    ] = False,
    root: RootOption = None,
) -> None:
    """Run a method's demo, as ``python -m reference_impls.demos <loss>`` (or the method's own
    demo scenario) does; with ``--hf``, as ``python -m reference_impls.integrations <loss>``.

    Imports torch (and, with --hf, transformers) lazily.
    """
    if device not in DEVICES:
        raise CliError(f"unknown device {device!r}; use auto, cpu or cuda")
    found, known = _method(method, root)
    if found is not None and found.demo is not None and not hf:
        _run_scenario(found, steps, device)
        return
    loss = _loss_name(method, found, known)
    if hf:
        _run_hf(method, loss, steps)
        return
    try:
        from reference_impls.demos import run_demo  # lazy: torch is heavy
    except ModuleNotFoundError as exc:
        raise CliError(f"the demos need torch ({exc}); install it with: pip install torch") from exc
    result = run_demo(loss, steps=steps, device=device)
    out.print(f"{method}: {loss} on {result.device}, final loss {result.losses[-1]:.4f}")


def zoo_cmd(ctx: typer.Context) -> None:
    """Distil one teacher into one student with every token-level loss and compare them.

    Options are those of ``python -m reference_impls.zoo`` (--losses, --seeds, --steps,
    --device, --out, --quiet; see ``kbtool zoo --help``). Imports torch lazily.
    """
    from reference_impls.zoo import main as zoo_main

    raise typer.Exit(zoo_main(list(ctx.args)))


def _method(name: str, root: Path | None) -> tuple[Method | None, set[str]]:
    """The method with this id (None when ``name`` is not one) and the losses methods name."""
    kb = load(root)
    return kb.methods.get(name), {m.loss.rsplit(".", 1)[1] for m in kb.methods.values() if m.loss}


def _loss_name(name: str, method: Method | None, known: set[str]) -> str:
    """The registry name of the loss a method id (or a methods' loss name) stands for."""
    if method is not None:
        if method.loss is None:
            raise CliError(f"method {name!r} has no reference loss to run; see `kbtool methods`")
        return method.loss.rsplit(".", 1)[1]
    if name in known:
        return name
    raise CliError(f"unknown method {name!r}; see `kbtool methods`")


def _run_scenario(method: Method, steps: int | None, device: str) -> None:
    """The method's own demo (``Method.demo``), through the demos' command line."""
    try:
        from reference_impls.demos.cli import main as demos_main  # lazy: torch is heavy
    except ModuleNotFoundError as exc:
        raise CliError(f"the demos need torch ({exc}); install it with: pip install torch") from exc
    argv = [*shlex.split(method.demo or ""), "--device", device]
    if steps is not None:
        argv += ["--steps", str(steps)]
    status = demos_main(argv)
    if status != 0:
        raise CliError(f"the demo of method {method.id!r} stopped with status {status}")


def _run_hf(method: str, loss: str, steps: int | None) -> None:
    """The tiny Hugging Face run of a loss through the DistillationTrainer."""
    try:  # deferred: torch and transformers are heavy, transformers is an optional extra
        from reference_impls.integrations.tiny import run_tiny_hf_demo
    except ImportError as exc:
        raise CliError(
            f"--hf needs the Hugging Face extra ({exc}); install it with: "
            "pip install -c requirements.lock.txt -e '.[hf]'"
        ) from exc
    result = run_tiny_hf_demo(loss, steps=steps or 20)
    out.print(
        f"{method}: {loss} on tiny {result['family']} through the DistillationTrainer, "
        f"held-out KL(teacher || student) {result['kl_before']:.4f} -> {result['kl_after']:.4f}"
    )
