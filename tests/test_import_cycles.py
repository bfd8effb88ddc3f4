"""No import cycles: the module-level import graph of each package is acyclic.

The graph is read from the source with ``ast``, never by importing. An edge ``a -> b`` means
that executing module ``a`` runs module ``b`` first: ``import x.y.z`` runs ``x``, ``x.y`` and
``x.y.z`` (package ``__init__`` files included), ``from x.y import name`` runs ``x.y`` and
also ``x.y.name`` when that is a submodule. The importing module's own parent packages are
skipped for ``import``/``from`` of a deeper module: they are already running when it runs.
Imports inside functions (deferred on purpose) and under ``if TYPE_CHECKING:`` are ignored.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Packages whose import graph must stay acyclic (add one here when it is cleaned up).
PACKAGES = ["kbtool", "reference_impls"]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module runs (not in functions or classes' methods,
    not under ``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name != "TYPE_CHECKING":
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block)
            for handler in node.handlers:
                yield from _module_level(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _module_level(node.body)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> modules of ``package`` it runs at import time (see the module docstring)."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own = set(_parents(name))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level(tree.body):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets += [p for p in _parents(alias.name) if p not in own]
                    targets.append(alias.name)
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets += [p for p in _parents(base) if p not in own]
                targets.append(base)
                targets += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of modules that import each other (Tarjan), each as a
    closed path ``[a, b, ..., a]``; self-imports count as cycles too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, group) for group in sorted(groups)]


def _closed_path(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One shortest cycle through the group's first module (breadth-first search)."""
    start = group[0]
    members = set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return [*group, start]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    cycles = find_cycles(import_graph(REPO, package))
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_cycle_finder_sees_cycles_through_package_inits(tmp_path: Path) -> None:
    """The finder flags a direct cycle, one through a package ``__init__`` (a module reading
    from its own package, whose ``__init__`` imports it back) and one made by ``from pkg import
    submodule``; it ignores function-level and TYPE_CHECKING imports."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.site.build import build\n",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "from pkg import a\n",
            "pkg/site/__init__.py": "from pkg.site.build import build\n",
            "pkg/site/build.py": "from pkg.site.render import render\n\ndef build(): ...\n",
            "pkg/site/render.py": "from pkg.site import plots\n\ndef render(): ...\n",
            "pkg/site/plots.py": "X = 1\n",
            "pkg/lazy.py": "def f():\n    import pkg.typed\n",
            "pkg/typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    import pkg.lazy\n"
                "import pkg.lazy\n"
            ),
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}  # its own parent package is already running
    assert graph["pkg.b"] == {"pkg", "pkg.a"}  # reads from the package, then the submodule
    assert graph["pkg.lazy"] == set()
    assert graph["pkg.typed"] == {"pkg.lazy"}
    cycles = find_cycles(graph)
    assert ["pkg.a", "pkg.b", "pkg.a"] in cycles
    site = next(c for c in cycles if "pkg.site.render" in c)
    assert set(site) == {"pkg.site", "pkg.site.build", "pkg.site.render"}
    assert site[0] == site[-1]


def test_cycle_finder_accepts_an_acyclic_package(tmp_path: Path) -> None:
    """The same layout with the render module importing the submodule directly is clean."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/site/__init__.py": "from pkg.site.build import build\n",
            "pkg/site/build.py": "from pkg.site.render import render\n\ndef build(): ...\n",
            "pkg/site/render.py": "from pkg.site.plots import X\n\ndef render(): ...\n",
            "pkg/site/plots.py": "from .colors import RED\nX = 1\n",
            "pkg/site/colors.py": "RED = 1\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.site.plots"] == {"pkg.site.colors"}
    assert find_cycles(graph) == []
