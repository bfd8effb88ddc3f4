"""The ``kbtool import-papers`` command, as a plain function that ``kbtool.cli`` registers.

Errors are raised (KnowledgeBaseError and friends) for the CLI's common handler to print as
file: field: message lines with exit status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console()


def import_papers_cmd(
    file: Annotated[Path, typer.Argument(help="A post-survey source file (JSON lines).")],
    crosswalk: Annotated[
        Path | None,
        typer.Option(help="List sections -> nodes [default: <root>/taxonomy/crosswalk.yaml]."),
    ] = None,
    reviews: Annotated[
        Path | None,
        typer.Option(help="Reviewed placements [default: <root>/taxonomy/reviews.yaml if any]."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Knowledge base directory (default: bundled).")
    ] = None,
) -> None:
    """Add the source's papers, placed by the crosswalk and reviews (idempotent); conflicts
    and dropped papers go to papers/IMPORT_REPORT.md. Nothing is written if any input is bad."""
    from kbtool.core.paths import default_root
    from kbtool.ingest.post_survey import import_post_survey

    base = root if root is not None else default_root()
    crosswalk = crosswalk or base / "taxonomy" / "crosswalk.yaml"
    if reviews is None and (base / "taxonomy" / "reviews.yaml").is_file():
        reviews = base / "taxonomy" / "reviews.yaml"
    for path in (file, crosswalk, *([reviews] if reviews else [])):
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", str(path))
    report = import_post_survey(base, file, crosswalk, reviews)
    used = f"crosswalk {crosswalk}" + (f", reviews {reviews}" if reviews else ", no reviews")
    out.print(f"placed by {used}", soft_wrap=True, highlight=False)
    out.print(
        f"{report.records} papers in the source: {len(report.added)} added, "
        f"{len(report.updated)} updated, {len(report.dropped)} dropped, "
        f"{len(report.conflicts)} conflict(s) (see papers/IMPORT_REPORT.md)",
        soft_wrap=True,
        highlight=False,
    )
    for paper_id in report.added:
        out.print(f"  + {paper_id}", highlight=False)
    for paper_id in report.updated:
        out.print(f"  ~ {paper_id}", highlight=False)
