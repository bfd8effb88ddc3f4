"""``import kbtool`` and loading the knowledge base stay light: no torch, mkdocs or CLI stack,
and ``reference_impls`` never imports ``kbtool`` (one loss file can be copied with torch alone)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "mkdocs", "material", "typer", "rich", "transformers", "jinja2", "bibtexparser")


def test_import_and_load_pull_in_no_heavy_module() -> None:
    code = (
        "import sys, kbtool\n"
        "kb = kbtool.load()\n"
        "kb.query(node='alignment', has_code=True)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


def test_reference_impls_never_import_kbtool() -> None:
    offenders = []
    for path in sorted((REPO / "reference_impls").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            where = path.relative_to(REPO)
            offenders += [f"{where}: {n}" for n in names if n.split(".")[0] == "kbtool"]
    assert offenders == []
