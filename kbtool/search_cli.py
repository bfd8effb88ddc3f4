"""The ``kbtool search`` and ``kbtool suggest`` commands, as plain functions for typer.

``kbtool.cli`` registers them (``app.command("search")(search_cmd)``); they report their own
errors (no embedding model, empty text, unreadable list) as one line on stderr and exit 1.
Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from kbtool.placement import TriageItem
    from kbtool.semantic import Kind

out = Console()
err = Console(stderr=True)


class SearchBackend(StrEnum):
    """How ``search`` ranks: MiniLM embeddings, BM25 words, or embeddings when installed."""

    auto = "auto"
    embedding = "embedding"
    lexical = "lexical"


class SuggestMethod(StrEnum):
    """How ``suggest`` finds neighbours: see ``kbtool.placement``."""

    auto = "auto"
    hybrid = "hybrid"
    embedding = "embedding"
    lexical = "lexical"


class KindChoice(StrEnum):
    """Which items ``search`` returns."""

    all = "all"
    paper = "paper"
    method = "method"


class Format(StrEnum):
    """How results are printed."""

    table = "table"
    json = "json"


RootOpt = Annotated[
    Path | None, typer.Option("--root", help="Knowledge base directory (default: bundled).")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="table or json.")]


@contextmanager
def _errors() -> Iterator[None]:
    """One clear line and exit status 1 for the failures a user can fix."""
    from kbtool.semantic import SemanticUnavailableError

    try:
        yield
    except (SemanticUnavailableError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc


def _note_fallback(requested: str) -> None:
    from kbtool.semantic import INSTALL_HINT, embedding_available

    if requested == "auto" and not embedding_available():
        err.print(
            "[yellow]note:[/yellow] the embedding model is not installed, so results are ranked "
            f"by shared words (BM25). For semantic ranking: {escape(INSTALL_HINT)}",
            highlight=False,
        )


def search_cmd(
    text: Annotated[str, typer.Argument(help="A title, some keywords or a description.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")] = 10,
    kind: Annotated[KindChoice, typer.Option(help="all, paper or method.")] = KindChoice.all,
    backend: Annotated[
        SearchBackend, typer.Option(help="auto (embeddings if installed), embedding, lexical.")
    ] = SearchBackend.auto,
    output: FormatOpt = Format.table,
    root: RootOpt = None,
) -> None:
    """Papers and methods most similar to TEXT (embeddings, or BM25 without the extra)."""
    from kbtool.kb import load
    from kbtool.semantic import search

    with _errors():
        kb = load(root)
        _note_fallback(backend.value)
        kinds: tuple[Kind, ...] = ("paper", "method")
        if kind is not KindChoice.all:
            kinds = ("paper",) if kind is KindChoice.paper else ("method",)
        hits = search(kb, text, k, backend=backend.value, kinds=kinds)
    if output is Format.json:
        sys.stdout.write(json.dumps([asdict(h) for h in hits], indent=2) + "\n")
        return
    table = Table("#", "kind", "id", "score", "title / name", "nodes", title=f"{len(hits)} hit(s)")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank), hit.kind, hit.id, f"{hit.score:.3f}", hit.label, ", ".join(hit.nodes)
        )
    out.print(table)


def suggest_cmd(
    title: Annotated[str | None, typer.Option(help="Title of the paper to place.")] = None,
    abstract: Annotated[str | None, typer.Option(help="Its abstract (optional).")] = None,
    section: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            help="A curated-list section filing the paper, e.g. 'Papers > Self-Distillation' "
            "(repeatable; optional).",
        ),
    ] = None,
    from_awesome: Annotated[
        Path | None,
        typer.Option(
            "--from-awesome",
            help="A (newer) upstream paper list: suggest leaves for every paper not in the KB.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many leaves.")] = 3,
    neighbours: Annotated[int, typer.Option(min=1, help="Placed papers that vote (k-NN).")] = 10,
    method: Annotated[
        SuggestMethod, typer.Option(help="auto (hybrid if installed), hybrid, embedding, lexical.")
    ] = SuggestMethod.auto,
    output: FormatOpt = Format.table,
    root: RootOpt = None,
) -> None:
    """Suggest taxonomy leaves for a new paper, with scores and the placed papers behind them."""
    from kbtool.kb import load
    from kbtool.placement import suggest, triage_awesome

    with _errors():
        if (title is None) == (from_awesome is None):
            raise ValueError("give either --title (and optionally --abstract) or --from-awesome")
        if from_awesome is not None and (abstract is not None or section):
            raise ValueError("--abstract and --section go with --title, not with --from-awesome")
        kb = load(root)
        _note_fallback(method.value)
        if from_awesome is not None:
            text = _read(from_awesome)
            items = triage_awesome(kb, text, k, neighbours=neighbours, method=method.value)
            _print_triage(items, output)
            return
        assert title is not None
        found = suggest(
            kb,
            title,
            abstract,
            k,
            neighbours=neighbours,
            method=method.value,
            sections=section or (),
        )
    if output is Format.json:
        sys.stdout.write(json.dumps([asdict(s) for s in found], indent=2) + "\n")
        return
    table = Table("leaf", "pillar", "score", "evidence (share of the score)", title=title)
    for s in found:
        evidence = "\n".join(f"{e.paper_id} ({e.share:.2f}): {e.title}" for e in s.evidence)
        table.add_row(f"{s.node}\n{s.name}", s.pillar, f"{s.score:.2f}", evidence or "-")
    out.print(table)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc


def _print_triage(items: list[TriageItem], output: Format) -> None:
    """One row per missing paper; 'agrees' when a suggested leaf is a heading it is listed under."""
    if output is Format.json:
        sys.stdout.write(json.dumps([asdict(i) for i in items], indent=2) + "\n")
        return
    if not items:
        out.print("every paper of the list is already in the knowledge base")
        return
    table = Table("title", "listed under", "suggested leaves (score)", "agrees")
    top1 = topk = 0
    for item in items:
        suggested = [s.node for s in item.suggestions]
        agrees = bool(set(suggested) & set(item.listed_under))
        top1 += bool(suggested) and suggested[0] in item.listed_under
        topk += agrees
        leaves = ", ".join(f"{s.node} ({s.score:.2f})" for s in item.suggestions)
        table.add_row(item.title, ", ".join(item.listed_under), leaves, "yes" if agrees else "")
    out.print(table)
    out.print(
        f"{len(items)} paper(s) of the list are not in the knowledge base; the top suggestion "
        f"matches the list's heading for {top1}, one of the top {len(items[0].suggestions)} "
        f"for {topk}."
    )
