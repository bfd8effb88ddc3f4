"""Find the source of a method's reference implementation without importing torch.

A method's ``loss`` is a dotted name such as ``reference_impls.forward_kl``; the function is
defined in a loss-family module (``reference_impls/kl.py``) and re-exported by the package.
We read ``reference_impls/__init__.py`` with ``ast`` to find that module, then the function's
line span in it, so the site can include those lines from the file itself at build time.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "reference_impls"


class ReferenceImplError(LookupError):
    """A ``loss`` name that does not resolve to a function in ``reference_impls``."""


@dataclass(frozen=True)
class LossSource:
    """Where a loss function lives: file (relative to the package's parent) and line span."""

    dotted: str
    function: str
    module: str  # e.g. "reference_impls.kl"
    path: str  # e.g. "reference_impls/kl.py", relative to ``base_dir``
    start: int  # first line (decorators included), 1-based
    end: int  # last line, inclusive
    base_dir: Path  # the directory that contains the package directory

    @property
    def runner_module(self) -> str:
        """Module name of the demo runner for this loss (``python -m ...``)."""
        return f"{PACKAGE}.{self.function}"

    def has_runner(self) -> bool:
        """True when the demo-runner module file ``reference_impls/<function>.py`` exists."""
        return (self.base_dir / PACKAGE / f"{self.function}.py").is_file()


def package_dir() -> Path:
    """The directory of the ``reference_impls`` package, found without executing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ReferenceImplError(f"package {PACKAGE!r} is not importable")
    return Path(spec.origin).resolve().parent


def _reexports(init_file: Path) -> dict[str, tuple[str, str]]:
    """Names imported in ``__init__.py``: exported name -> (module, original name)."""
    tree = ast.parse(init_file.read_text(encoding="utf-8"), filename=str(init_file))
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _function_span(path: Path, name: str) -> tuple[int, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            return first, node.end_lineno
    raise ReferenceImplError(f"no top-level function {name!r} in {path}")


def locate(dotted: str, pkg_dir: Path | None = None) -> LossSource:
    """Resolve ``reference_impls.<name>`` (or ``reference_impls.<module>.<name>``) to its source."""
    pkg = pkg_dir if pkg_dir is not None else package_dir()
    parts = dotted.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE:
        raise ReferenceImplError(f"{dotted!r} is not a name inside {PACKAGE}")
    function = parts[-1]
    if len(parts) == 2:
        exports = _reexports(pkg / "__init__.py")
        if function not in exports:
            raise ReferenceImplError(f"{PACKAGE}/__init__.py does not export {function!r}")
        module, original = exports[function]
    else:
        module, original = ".".join(parts[:-1]), function
    rel_parts = module.split(".")
    if rel_parts[0] != PACKAGE:
        raise ReferenceImplError(f"{dotted!r} is re-exported from outside {PACKAGE}: {module}")
    path = pkg.parent.joinpath(*rel_parts).with_suffix(".py")
    if not path.is_file():
        raise ReferenceImplError(f"{dotted!r}: module file {path} does not exist")
    start, end = _function_span(path, original)
    return LossSource(
        dotted=dotted,
        function=original,
        module=module,
        path="/".join(rel_parts) + ".py",
        start=start,
        end=end,
        base_dir=pkg.parent,
    )
