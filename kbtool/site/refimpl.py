"""Find the source of a method's reference implementation without importing torch.

A method's ``loss`` is a dotted name such as ``reference_impls.forward_kl``; the function is
defined in a loss-family module (``reference_impls/kl.py``) and registered in
``reference_impls/registry.py``. We read the package's top-level modules with ``ast`` to find
the one that defines it, then the function's line span in it, so the site can include those
lines from the file itself at build time.
"""

from __future__ import annotations

import ast
import functools
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
    def demo_command(self) -> str:
        """The shell command that runs this loss's demo."""
        return f"python -m {PACKAGE}.demos {self.function}"


def package_dir() -> Path:
    """The directory of the ``reference_impls`` package, found without executing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ReferenceImplError(f"package {PACKAGE!r} is not importable")
    return Path(spec.origin).resolve().parent


def _definitions(pkg: Path) -> dict[str, str]:
    """Top-level functions and classes of the package's modules: name -> module file stem."""
    files = tuple((p, p.stat().st_mtime_ns) for p in sorted(pkg.glob("*.py")))
    return _parse_definitions(files)


@functools.lru_cache(maxsize=4)
def _parse_definitions(files: tuple[tuple[Path, int], ...]) -> dict[str, str]:
    """:func:`_definitions` of these files, parsed once per modification time."""
    out: dict[str, str] = {}
    for path, _ in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                out.setdefault(node.name, path.stem)
    return out


#: What a method may point at: a function (a loss, a sampler) or a class (a schedule).
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _function_span(path: Path, name: str) -> tuple[int, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, _DEFINITIONS) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            return first, node.end_lineno
    raise ReferenceImplError(f"no top-level function or class {name!r} in {path}")


def locate(dotted: str, pkg_dir: Path | None = None) -> LossSource:
    """Resolve ``reference_impls.<name>`` (or ``reference_impls.<module>.<name>``) to its source."""
    pkg = pkg_dir if pkg_dir is not None else package_dir()
    parts = dotted.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE:
        raise ReferenceImplError(f"{dotted!r} is not a name inside {PACKAGE}")
    function = parts[-1]
    if len(parts) == 2:
        defined = _definitions(pkg)
        if function not in defined:
            raise ReferenceImplError(
                f"no module of {PACKAGE} defines a function or class {function!r}"
            )
        module, original = f"{PACKAGE}.{defined[function]}", function
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


def registry_kinds(pkg_dir: Path | None = None) -> dict[str, str]:
    """Loss name -> the member name of its registry kind (``"TOKEN_LEVEL"``, ...), read from
    ``reference_impls/registry.py`` with ``ast`` (no torch): every ``LossSpec(family.fn,
    Kind.X, ...)`` entry, kinds given directly or through a module-level alias."""
    path = (pkg_dir if pkg_dir is not None else package_dir()) / "registry.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: dict[str, str] = {}
    for node in tree.body:  # e.g. _TK, _HS = Kind.TOKEN_LEVEL, Kind.HIDDEN_STATE
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            names = target.elts if isinstance(target, ast.Tuple) else [target]
            values = value.elts if isinstance(value, ast.Tuple) else [value]
            for name, val in zip(names, values, strict=False):
                if isinstance(name, ast.Name) and _kind_member(val, {}):
                    aliases[name.id] = _kind_member(val, {})
    out: dict[str, str] = {}
    for call in ast.walk(tree):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "LossSpec"
            and len(call.args) >= 2
            and isinstance(call.args[0], ast.Attribute)
        ):
            kind = _kind_member(call.args[1], aliases)
            if kind:
                out[call.args[0].attr] = kind
    return out


def registry_params(pkg_dir: Path | None = None) -> dict[str, dict[str, object]]:
    """Loss name -> the hyperparameters its registry entry passes (``LossSpec``'s ``params``,
    4th positional or by keyword), read with ``ast`` when they are a literal dict."""
    path = (pkg_dir if pkg_dir is not None else package_dir()) / "registry.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: dict[str, dict[str, object]] = {}
    for call in ast.walk(tree):
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "LossSpec"
            and call.args
            and isinstance(call.args[0], ast.Attribute)
        ):
            continue
        given = [k.value for k in call.keywords if k.arg == "params"] + call.args[3:4]
        try:
            params = ast.literal_eval(given[0]) if given else None
        except ValueError:  # not a literal: the site shows no parameters
            params = None
        if isinstance(params, dict) and params:
            out[call.args[0].attr] = params
    return out


def _kind_member(node: ast.expr, aliases: dict[str, str]) -> str:
    """``Kind.X`` -> ``"X"``; an alias name -> its member; anything else -> ``""``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id == "Kind" else ""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, "")
    return ""
