"""Paper ids: readable, unique, made of words a reader recognises."""

from __future__ import annotations

from kbtool.ingest.paper_ids import make_paper_id


def test_id_is_surname_year_first_keyword() -> None:
    assert make_paper_id(["Yuxian Gu"], 2023, "MiniLLM: Knowledge Distillation", set()) == (
        "gu2023minillm"
    )


def test_without_authors_two_title_keywords() -> None:
    assert make_paper_id([], 2023, "Textbooks Are All You Need", set()) == "textbooks2023need"


def test_latex_commands_and_single_letters_are_not_keywords() -> None:
    title = r"$\boldsymbol{f}$-OPD: Stabilizing Long-Horizon On-Policy Distillation"
    assert make_paper_id(["Wei Chen"], 2026, title, set()) == "chen2026opd"


def test_collisions_get_letter_suffixes() -> None:
    taken = {"gu2023minillm", "gu2023minillmb"}
    assert make_paper_id(["Yuxian Gu"], 2023, "MiniLLM", taken) == "gu2023minillmc"
