"""What every ``kbtool`` command shares: the console pair, the one error handler and the
option types, so that errors, flags and output look the same across commands.

Bad input never produces a traceback: every command reports ``file: field: message`` lines
(or one clear sentence) on stderr and exits with status 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from kbtool.core.errors import KnowledgeBaseError, Problem
from kbtool.retrieval.semantic import SemanticUnavailableError

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A user-facing error: printed as one message, exit status 1."""


class OutputFormat(StrEnum):
    """How results are printed: a table for people, or JSON for programs."""

    table = "table"
    json = "json"


RootOption = Annotated[
    Path | None, typer.Option("--root", help="Knowledge base directory (default: bundled).")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
NodeOption = Annotated[str | None, typer.Option("--node", help="Only papers under this node.")]
OutOption = Annotated[Path | None, typer.Option("--out", help="Output file (default: stdout).")]


def friendly(fn: F) -> F:
    """Turn known failures into clear messages and a non-zero exit, never a traceback.

    Our own errors (bad data, bad files, unknown ids, a missing optional extra) subclass
    ``ValueError``, ``KeyError`` or one of the classes below.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        try:
            return fn(*args, **kwargs)
        except KnowledgeBaseError as exc:
            print_problems(exc.problems)
        except (CliError, SemanticUnavailableError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            error(str(message))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            error(f"{exc.filename}: {reason}" if exc.filename else reason)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def error(message: str) -> None:
    """One error line on stderr: user text is escaped (never read as markup), never wrapped."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """One advisory line on stderr (the command goes on)."""
    err.print(f"[yellow]note:[/yellow] {escape(message)}", highlight=False)


def print_problems(problems: list[Problem]) -> None:
    """Every problem as a ``file: field: message`` line on stderr, then the count."""
    for problem in sorted(problems):
        err.print(str(problem), highlight=False, markup=False, soft_wrap=True)
    err.print(f"[red]{len(problems)} problem(s) found[/red]", soft_wrap=True)


def read_text(path: Path) -> str:
    """A user's input file as UTF-8 text; unreadable files become one clear message."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    except FileNotFoundError as exc:
        raise CliError(f"{path}: no such file") from exc
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from exc
