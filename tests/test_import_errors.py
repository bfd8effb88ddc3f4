"""Bad source data gives clear errors that name the file, the entry and the field, and writes
nothing; ids follow the year the paper gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kbtool.core.errors import KnowledgeBaseError
from kbtool.core.loader import load_records
from kbtool.ingest.awesome_import import import_awesome
from kbtool.ingest.bibtex_import import import_bibtex
from kbtool.ingest.metadata import MetadataError, load_metadata
from kbtool.ingest.survey_table import import_summary, parse_summary

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
HEADER = (
    "section\tmethod\tcitation\tskill\tseed_knowledge\tteacher\tstudent\telicitation\tobjective"
)
OMEGA = "Omega Distillation of Things"
TABLE = "|  Title  |   Venue  |   Date   | Code | Data|\n|:--|:--:|:--:|:--:|:--:|\n"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "papers").iterdir())}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"title": "T", "authors": "Ann Smith and Bob Jones"}, "authors"),
        ({"title": "T", "year": "2020"}, "year"),
        ({"title": "T", "arxiv_id": "not-an-id"}, "arxiv_id"),
        ({"title": "T", "survey_ref_numbers": ["3"]}, "survey_ref_numbers"),
        ({"title": ""}, "title"),
    ],
)
def test_metadata_with_wrong_types_names_file_line_and_field(
    tmp_path: Path, record: dict[str, object], field: str
) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text('{"title": "Fine"}\n' + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(MetadataError) as info:
        load_metadata(path)
    assert f"{path}:2" in str(info.value) and field in str(info.value)


def test_metadata_arxiv_version_suffix_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text('{"title": "T", "arxiv_id": "2401.01234v3"}\n', encoding="utf-8")
    assert load_metadata(path).records[0].arxiv_id == "2401.01234"


def test_summary_row_with_missing_cells_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"row 1 .* expected 9 tab-separated cells"):
        parse_summary(f"{HEADER}\nContext Following\tAlpaca\tTaori et al., 2023\n")


def test_summary_unknown_label_names_row_column_and_known_labels(kb: Path) -> None:
    row = "Context Following\tAlpaca\tTaori et al., 2023\tIF\tseed\tGPT3\tLLaMA\tTelepathy\tSFT"
    before = _files(kb)
    with pytest.raises(ValueError, match=r"'Alpaca'.*'elicitation'.*'Telepathy'.*labeling"):
        import_summary(kb, f"{HEADER}\n{row}\n")
    assert _files(kb) == before


def test_list_paper_id_uses_the_year_the_paper_gets(kb: Path) -> None:
    text = (
        "## KD Algorithms\n### Knowledge Elicitation\n#### Labeling\n"
        + TABLE
        + f"| [**{OMEGA}**](https://arxiv.org/abs/2401.99999) | arXiv | 2024-01 |\n"
        "#### Feedback\n"
        + TABLE
        + f"| [**{OMEGA}**](https://arxiv.org/abs/2401.99999) | arXiv | 2023-05 |\n"
    )
    report = import_awesome(kb, text, source_name="list.md", write_report=False)
    (paper_id,) = report.added
    paper = next(p for p in load_records(kb).papers if p.id == paper_id)
    assert paper.year == 2023 and "2023" in paper_id


def test_list_row_with_an_implausible_date_names_the_line(kb: Path) -> None:
    text = (
        "## KD Algorithms\n### Knowledge Elicitation\n#### Labeling\n"
        + TABLE
        + "| [**Ancient Paper**](https://example.org/a) | - | 1980-01 |\n"
    )
    before = _files(kb)
    with pytest.raises(KnowledgeBaseError) as info:
        import_awesome(kb, text, source_name="list.md", write_report=False)
    (problem,) = info.value.problems
    assert (
        problem.file == "list.md:line 6"
    )  # 3 headings, 2 table-header lines, then the row and problem.field == "year"
    assert _files(kb) == before


def test_bibtex_import_checks_nodes_and_arxiv_ids_within_the_batch(kb: Path) -> None:
    bib = (
        "@misc{new2024one, title={One}, year={2024}, eprint={2401.00001},"
        " keywords={no-such-node}}\n"
        "@misc{new2024two, title={Two}, year={2024}, eprint={2401.00001}}\n"
    )
    before = _files(kb)
    with pytest.raises(KnowledgeBaseError) as info:
        import_bibtex(kb, bib, source="refs.bib")
    found = {(p.file, p.field) for p in info.value.problems}
    assert ("refs.bib", "new2024one.nodes") in found
    assert ("refs.bib", "new2024two.arxiv_id") in found
    assert _files(kb) == before


def test_bibtex_import_skips_a_known_paper_cited_with_a_version(kb: Path) -> None:
    known = next(p for p in load_records(kb).papers if p.arxiv_id)
    bib = f"@misc{{other, title={{Whatever}}, year={{2024}}, eprint={{{known.arxiv_id}v2}}}}\n"
    report = import_bibtex(kb, bib, source="refs.bib")
    assert report.skipped == ["other"] and report.added == []


def test_yml_paper_file_is_reported_not_ignored(kb: Path) -> None:
    (kb / "papers" / "stray.yml").write_text("id: stray\n", encoding="utf-8")
    problems = load_records(kb).problems
    assert any(p.file == "papers/stray.yml" and ".yaml" in p.message for p in problems)
