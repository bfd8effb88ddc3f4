"""What the long jobs (teacher cache, loss zoo) share: atomic file writes and a progress bar.

A file is written to a temporary sibling, flushed to disk and renamed into place, so a reader
(the site build, a resumed cache) never sees half of it. The progress bar is rich's on a
terminal and one plain line per update otherwise (logs, CI).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

BAR_WIDTH = 24


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write`` into a temporary sibling, fsync, then rename it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")

    def write(f: IO[bytes]) -> None:
        f.write(data)

    write_atomic(path, write)


class Progress:
    """Progress of ``total`` steps (``None``: unknown) on ``stream`` (stderr by default).

    On a terminal a rich bar is redrawn in place; otherwise one line
    ``[####----] done/total label  elapsed, ~left`` per update, at most one per
    ``min_interval`` seconds (the last update always shows). ``enabled=False`` prints nothing.
    """

    def __init__(
        self,
        total: int | None,
        stream: TextIO | None = None,
        enabled: bool = True,
        *,
        min_interval: float = 0.0,
    ) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self.last_line = -math.inf
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: RichProgress | None = None
        if enabled and tty:
            self.bar = RichProgress(
                BarColumn(bar_width=BAR_WIDTH),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def advance(self, label: str, steps: int = 1) -> None:
        """Count ``steps`` more finished steps; ``label`` says what was just done."""
        self.done += steps
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=steps, description=label)
            return
        now = time.perf_counter()
        if now - self.last_line < self.min_interval and self.done != self.total:
            return
        self.last_line = now
        self.stream.write(self._line(label, now - self.start) + "\n")
        self.stream.flush()

    def _line(self, label: str, elapsed: float) -> str:
        if self.total is None:
            return f"{self.done} {label} {elapsed:5.0f} s elapsed"
        filled = round(BAR_WIDTH * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        left = elapsed / max(self.done, 1) * (self.total - self.done)
        return (
            f"[{bar}] {self.done:>{len(str(self.total))}}/{self.total} {label:<28} "
            f"{elapsed:5.0f} s elapsed, ~{left:.0f} s left"
        )

    def close(self, message: str = "") -> None:
        """Stop the bar and print ``message`` (if any) on its own line."""
        if self.bar is not None:
            self.bar.stop()
        if self.enabled and message:
            self.stream.write(message + "\n")
            self.stream.flush()
