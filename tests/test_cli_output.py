"""The CLI's output helpers: tables that fit the terminal, the progress display, short names."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from kbtool.cli import progress as progress_module
from kbtool.cli.tables import Column, fitted_table, short_loss

COLUMNS = [
    Column("id", keep=5),
    Column("title", keep=3, wrap=True, min_width=12),
    Column("venue", keep=1, wrap=True, min_width=6),
    Column("year", keep=4),
]
ROWS = [
    ["gu2023minillm", "MiniLLM: Knowledge Distillation of Large Language Models", "ICLR", "2023"],
    ["agarwal2024onpolicy", "On-Policy Distillation of Language Models", "ICLR", "2024"],
]


def _render(width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(fitted_table(COLUMNS, ROWS, width=width))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


def test_wide_terminal_shows_every_column_and_whole_ids() -> None:
    lines = _render(120)
    assert "venue" in lines[1] and "year" in lines[1]
    assert any("gu2023minillm" in line for line in lines)
    assert not any("not shown" in line for line in lines)


def test_narrow_terminal_drops_the_least_kept_column_first_and_says_so() -> None:
    lines = _render(48)
    assert all(len(line) <= 48 for line in lines), lines
    header = lines[1]
    assert "venue" not in header and "id" in header and "year" in header
    assert "(not shown at this width: venue)" in " ".join(" ".join(lines).split())
    cells = {c.strip() for line in lines for c in line.split("│")}
    assert {"gu2023minillm", "agarwal2024onpolicy", "2023", "2024"} <= cells


def test_short_loss_names() -> None:
    assert short_loss("reference_impls.kl.forward_kl") == "forward_kl"
    assert short_loss("reference_impls.sft_loss") == "sft_loss"
    assert short_loss(None) == ""


def test_progress_is_silent_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipes and logs get results only: the transient display writes nothing there."""
    stream = io.StringIO()
    monkeypatch.setattr(progress_module, "err", Console(file=stream, force_terminal=False))
    steps = []
    with progress_module.progress("working", total=3) as advance:
        for step in range(3):
            advance(1)
            steps.append(step)
    assert steps == [0, 1, 2] and stream.getvalue() == ""


def test_progress_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the bar shows the description and the count of steps done."""
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(progress_module, "err", console)
    with progress_module.progress("embedding titles", total=4) as advance:
        advance(2)
        advance(2)
    assert "embedding titles" in stream.getvalue() and "4/4" in stream.getvalue()
