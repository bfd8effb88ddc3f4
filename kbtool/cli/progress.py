"""The one progress display of the CLI's long jobs: a rich bar (or spinner) on stderr.

It is transient (gone when the job ends) and silent when stderr is not a terminal, so pipes
and logs only get the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from kbtool.cli.common import err


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Show ``description`` with a bar of ``total`` steps (a spinner when ``total`` is None);
    yields ``advance(steps)``."""
    if not err.is_terminal:  # pipes, logs and CI: results only
        yield _ignore
        return
    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1) -> None:
            bar.advance(task, steps)

        yield advance


def _ignore(steps: int = 1) -> None:
    """``advance`` when nothing is displayed."""
