"""What a method page shows below its formula: its code, how to run it, how to train with it.

Everything is read without importing torch: sources, registry kinds and hyperparameters come
from :mod:`kbtool.site.refimpl`'s ``ast`` readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kbtool.core.model import Method
from kbtool.site.refimpl import (
    PACKAGE,
    LossSource,
    ReferenceImplError,
    locate,
    registry_kinds,
    registry_params,
)

RUN_COMMAND = "kbtool run {method_id}"
HF_RUN_COMMAND = "kbtool run {method_id} --hf"

#: How the Hugging Face DistillationTrainer feeds each registry kind; the same mapping as
#: ``reference_impls.integrations.objective.TRAINER_KINDS`` (a test checks they agree), kept
#: here so that rendering never imports torch.
TRAINER_FEEDS = {
    "TOKEN_LEVEL": "token",
    "SPARSE_TOPK": "topk",
    "SEQUENCE": "sft",
    "POLICY_GRADIENT": "policy_gradient",
    "SPARSE_SAMPLED": "sampled",
    "ON_POLICY_PG": "on_policy",
}


def python_dict(params: dict[str, object]) -> str:
    """``{"beta": 0.9}``: hyperparameters as a Python literal for a snippet ('' if none)."""
    return "{" + ", ".join(f'"{k}": {v!r}' for k, v in params.items()) + "}" if params else ""


@dataclass(frozen=True)
class MethodCode:
    """The code part of one method page (template context)."""

    source: LossSource | None
    utilities: list[LossSource]
    run_commands: str
    loss_name: str | None
    trainer_kind: str  # a value of TRAINER_FEEDS, or "none"
    loss_params: str  # python_dict of the registry's hyperparameters

    def context(self) -> dict[str, object]:
        """The fields as template variables."""
        return dict(self.__dict__)


class MethodCodeReader:
    """Reads the registry once, then each method's code part."""

    def __init__(self, pkg_dir: Path) -> None:
        self.pkg_dir = pkg_dir
        self.kinds, self.params = registry_kinds(pkg_dir), registry_params(pkg_dir)

    def read(self, method: Method) -> MethodCode:
        """``ReferenceImplError`` (naming the method) if a loss or utility does not resolve."""
        source = None if method.loss is None else self._locate(method, method.loss)
        loss_name = method.loss.rsplit(".", 1)[1] if method.loss else None
        trainer_kind = TRAINER_FEEDS.get(self.kinds.get(loss_name or "", ""), "none")
        commands = [RUN_COMMAND.format(method_id=method.id)]
        if method.demo is not None:
            commands.append(f"python -m {PACKAGE}.demos {method.demo}")
        elif source is not None:
            commands.append(source.demo_command)
        if trainer_kind != "none":
            commands.append(HF_RUN_COMMAND.format(method_id=method.id))
        return MethodCode(
            source=source,
            utilities=[self._locate(method, name) for name in method.utilities],
            run_commands="\n".join(commands),
            loss_name=loss_name,
            trainer_kind=trainer_kind,
            loss_params=python_dict(self.params.get(loss_name or "", {})),
        )

    def _locate(self, method: Method, dotted: str) -> LossSource:
        try:
            return locate(dotted, self.pkg_dir)
        except ReferenceImplError as exc:
            raise ReferenceImplError(f"method {method.id}: {exc}") from exc
