"""The ``kbtool search`` and ``kbtool suggest`` commands, as plain functions for typer.

``kbtool.cli.app`` registers them (``app.command("search")(search_cmd)``); the CLI's one error
handler reports their errors (no embedding model, empty text, unreadable list) as one line on
stderr with exit status 1. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbtool.cli.common import (
    FormatOption,
    OutputFormat,
    RootOption,
    friendly,
    note,
    out,
    read_text,
)
from kbtool.cli.progress import progress
from kbtool.cli.tables import Column, fitted_table
from kbtool.core.knowledge_base import load
from kbtool.retrieval.placement import suggest
from kbtool.retrieval.semantic import INSTALL_HINT, embedding_available, search
from kbtool.retrieval.triage import triage_awesome

if TYPE_CHECKING:
    from kbtool.retrieval.semantic import Kind
    from kbtool.retrieval.triage import TriageItem


class SearchBackend(StrEnum):
    """How ``search`` ranks: MiniLM embeddings, BM25 words, or embeddings when installed."""

    auto = "auto"
    embedding = "embedding"
    lexical = "lexical"


class SuggestMethod(StrEnum):
    """How ``suggest`` finds neighbours: see ``kbtool.retrieval.placement``."""

    auto = "auto"
    hybrid = "hybrid"
    embedding = "embedding"
    lexical = "lexical"


class KindChoice(StrEnum):
    """Which items ``search`` returns."""

    all = "all"
    paper = "paper"
    method = "method"


def _note_fallback(requested: str) -> None:
    if requested == "auto" and not embedding_available():
        note(
            "the embedding model is not installed, so results are ranked "
            f"by shared words (BM25). For semantic ranking: {INSTALL_HINT}"
        )


@friendly
def search_cmd(
    text: Annotated[str, typer.Argument(help="A title, some keywords or a description.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")] = 10,
    kind: Annotated[KindChoice, typer.Option(help="all, paper or method.")] = KindChoice.all,
    backend: Annotated[
        SearchBackend, typer.Option(help="auto (embeddings if installed), embedding, lexical.")
    ] = SearchBackend.auto,
    output: FormatOption = OutputFormat.table,
    root: RootOption = None,
) -> None:
    """Papers and methods most similar to TEXT (embeddings, or BM25 without the extra)."""
    kb = load(root)
    _note_fallback(backend.value)
    kinds: tuple[Kind, ...] = ("paper", "method")
    if kind is not KindChoice.all:
        kinds = ("paper",) if kind is KindChoice.paper else ("method",)
    with progress("searching"):
        hits = search(kb, text, k, backend=backend.value, kinds=kinds)
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([asdict(h) for h in hits], indent=2) + "\n")
        return
    columns = [
        Column("#", keep=2),
        Column("kind", keep=3),
        Column("id", keep=6),
        Column("score", keep=4),
        Column("title / name", keep=5, wrap=True, min_width=20),
        Column("nodes", keep=1, wrap=True),
    ]
    rows = [
        [str(rank), hit.kind, hit.id, f"{hit.score:.3f}", hit.label, ", ".join(hit.nodes)]
        for rank, hit in enumerate(hits, start=1)
    ]
    out.print(fitted_table(columns, rows, width=out.width, title=f"{len(hits)} hit(s)"))


@friendly
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
    output: FormatOption = OutputFormat.table,
    root: RootOption = None,
) -> None:
    """Suggest taxonomy leaves for a new paper, with scores and the placed papers behind them."""
    if (title is None) == (from_awesome is None):
        raise ValueError("give either --title (and optionally --abstract) or --from-awesome")
    if from_awesome is not None and (abstract is not None or section):
        raise ValueError("--abstract and --section go with --title, not with --from-awesome")
    kb = load(root)
    _note_fallback(method.value)
    if from_awesome is not None:
        text = read_text(from_awesome)
        with progress("placing the papers the knowledge base lacks"):
            items = triage_awesome(kb, text, k, neighbours=neighbours, method=method.value)
        _print_triage(items, output)
        return
    assert title is not None
    with progress("ranking taxonomy leaves"):
        found = suggest(
            kb,
            title,
            abstract,
            k,
            neighbours=neighbours,
            method=method.value,
            sections=section or (),
        )
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([asdict(s) for s in found], indent=2) + "\n")
        return
    columns = [
        Column("leaf", keep=4),
        Column("pillar", keep=1, wrap=True),
        Column("score", keep=3),
        Column("evidence (share of the score)", keep=2, wrap=True, min_width=20),
    ]
    rows = []
    for s in found:
        evidence = "\n".join(f"{e.paper_id} ({e.share:.2f}): {e.title}" for e in s.evidence)
        rows.append([f"{s.node}\n{s.name}", s.pillar, f"{s.score:.2f}", evidence or "-"])
    out.print(fitted_table(columns, rows, width=out.width, title=title))


def _print_triage(items: list[TriageItem], output: OutputFormat) -> None:
    """One row per missing paper; 'agrees' when a suggested leaf is a heading it is listed under."""
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([asdict(i) for i in items], indent=2) + "\n")
        return
    if not items:
        out.print("every paper of the list is already in the knowledge base")
        return
    columns = [
        Column("title", keep=4, wrap=True, min_width=20),
        Column("listed under", keep=2, wrap=True),
        Column("suggested leaves (score)", keep=3, wrap=True, min_width=16),
        Column("agrees", keep=1),
    ]
    rows = []
    top1 = topk = 0
    for item in items:
        suggested = [s.node for s in item.suggestions]
        agrees = bool(set(suggested) & set(item.listed_under))
        top1 += bool(suggested) and suggested[0] in item.listed_under
        topk += agrees
        leaves = ", ".join(f"{s.node} ({s.score:.2f})" for s in item.suggestions)
        rows.append([item.title, ", ".join(item.listed_under), leaves, "yes" if agrees else ""])
    out.print(fitted_table(columns, rows, width=out.width))
    out.print(
        f"{len(items)} paper(s) of the list are not in the knowledge base; the top suggestion "
        f"matches the list's heading for {top1}, one of the top {len(items[0].suggestions)} "
        f"for {topk}."
    )
