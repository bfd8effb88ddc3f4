"""BibTeX and CSL-JSON export: the real KB round-trips, hostile text is escaped, fields are right.

Entries are also parsed independently with bibtexparser v2 (not through kbtool's reader).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bibtexparser
import pytest

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Paper
from kbtool.export.bibtex import to_bibtex
from kbtool.export.csl import to_csl_json
from kbtool.ingest.bibtex_import import BibtexError, from_bibtex

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
ROUND_TRIP_FIELDS: tuple[str, ...] = ("id", "title", "authors", "year", "month", "venue")
ROUND_TRIP_FIELDS += ("venue_year", "arxiv_id", "url", "nodes")


@pytest.fixture(scope="module")
def real_kb() -> KnowledgeBase:
    """The bundled knowledge base."""
    return kbtool.load()


@pytest.fixture(scope="module")
def small_kb() -> KnowledgeBase:
    """The fixture knowledge base."""
    return kbtool.load(KB_SMALL)


def fields_of(text: str) -> dict[str, dict[str, str]]:
    """Entry key -> {field name: raw value} parsed by bibtexparser v2 itself."""
    library = bibtexparser.parse_string(text)
    assert library.failed_blocks == []
    return {e.key: {f.key: str(f.value) for f in e.fields} for e in library.entries}


def test_round_trip_of_every_real_paper(real_kb: KnowledgeBase) -> None:
    """to_bibtex -> from_bibtex -> Paper.model_validate keeps the bibliographic fields."""
    papers = list(real_kb.papers.values())
    assert len(papers) > 400
    back = [Paper.model_validate(data) for data in from_bibtex(to_bibtex(papers))]
    assert [p.id for p in back] == [p.id for p in papers]
    mismatches = [
        (p.id, name, getattr(p, name), getattr(q, name))
        for p, q in zip(papers, back, strict=True)
        for name in ROUND_TRIP_FIELDS
        if getattr(p, name) != getattr(q, name)
    ]
    assert mismatches == []


def test_every_real_entry_parses_independently(real_kb: KnowledgeBase) -> None:
    """bibtexparser reads every entry; keys are unique; arXiv papers carry eprint/archivePrefix."""
    papers = list(real_kb.papers.values())
    entries = fields_of(to_bibtex(papers))
    assert len(entries) == len(papers)
    for paper in papers:
        entry = entries[paper.id]
        # the venue's own year where known (issue 14), else the first version's
        assert entry["year"] == str(paper.venue_year or paper.year)
        if paper.arxiv_id:
            assert entry["eprint"] == paper.arxiv_id
            assert entry["archivePrefix"] == "arXiv"
        else:
            assert "eprint" not in entry and "archivePrefix" not in entry


HOSTILE = r"100% {Robust} KD & RL: $x_1$ #1 for A_B \ C ~ D ^ E"


def test_hostile_title_round_trips() -> None:
    """LaTeX specials & % $ # _ { } \\ ~ ^ are escaped on export and restored on import."""
    paper = Paper(
        id="hostile2024",
        title=HOSTILE,
        authors=["Ann O'Neil", "Bob_Smith {Jr}"],
        year=2024,
        month=1,
        venue="Findings of EMNLP & Co",
        arxiv_id="2401.00001",
        url="https://example.org/paper?x=1&y=2",
        nodes=["labeling"],
    )
    text = to_bibtex([paper])
    (back,) = [Paper.model_validate(d) for d in from_bibtex(text)]
    for name in ROUND_TRIP_FIELDS:
        assert getattr(back, name) == getattr(paper, name), name


def test_hostile_title_is_escaped_for_latex() -> None:
    """Read independently, the raw title has no unescaped special character and balanced braces."""
    paper = Paper(id="hostile2024", title=HOSTILE, year=2024, venue="arXiv")
    raw = fields_of(to_bibtex([paper]))["hostile2024"]["title"]
    assert raw.startswith("{") and raw.endswith("}")
    inner = raw[1:-1]
    for special in "&%$#_":
        assert inner.count(special) == inner.count("\\" + special) == HOSTILE.count(special)
    # braces: every literal brace of the title is escaped, the rest are balanced groups
    stripped = inner.replace("\\{", "").replace("\\}", "")
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert "\\textbackslash{}" in inner and "\\textasciitilde{}" in inner


def test_entry_types_and_venue_fields(small_kb: KnowledgeBase) -> None:
    """Conference -> inproceedings/booktitle, arXiv/Other -> misc/howpublished."""
    library = bibtexparser.parse_string(to_bibtex(list(small_kb.papers.values())))
    types = {e.key: e.entry_type for e in library.entries}
    assert types["gu2023minillm"] == "inproceedings"
    assert types["bai2022constitutional"] == "misc"
    assert types["taori2023alpaca"] == "misc"
    assert types["ko2024distillm"] == "misc"  # ICML, venue year not in the fixture
    entries = fields_of(to_bibtex(list(small_kb.papers.values())))
    minillm = entries["gu2023minillm"]
    assert minillm["booktitle"] == "ICLR"
    assert minillm["eprint"] == "2306.08543" and minillm["archivePrefix"] == "arXiv"
    assert minillm["author"] == "Yuxian Gu and Li Dong and Furu Wei and Minlie Huang"
    # ICLR 2024, first version 2023-06: the venue's year, the arXiv date as origdate
    assert minillm["year"] == "2024" and minillm["origdate"] == "2023-06"
    assert "month" not in minillm
    distillm = entries["ko2024distillm"]
    assert distillm["year"] == "2024" and distillm["month"] == "feb"
    assert distillm["note"] == "Venue: ICML (venue year not known; first version cited)"
    assert "booktitle" not in distillm and distillm["howpublished"] == "arXiv"
    assert minillm["keywords"] == "feature, feedback, divergence-and-similarity"
    assert "eprint" not in entries["taori2023alpaca"]
    assert entries["taori2023alpaca"]["howpublished"] == "Other"


def test_from_bibtex_reports_unparseable_blocks() -> None:
    """Broken BibTeX is an error naming the line, not silently fewer papers."""
    with pytest.raises(BibtexError, match="could not be parsed"):
        from_bibtex("@misc{ok, title={A}, year={2024}}\n\n@misc{broken, title={B\n")


def test_csl_json_is_valid_with_expected_keys(small_kb: KnowledgeBase) -> None:
    """CSL-JSON: a JSON list of items with id, type, title, author, issued, container-title."""
    papers = list(small_kb.papers.values())
    items = json.loads(to_csl_json(papers))
    assert isinstance(items, list) and [i["id"] for i in items] == [p.id for p in papers]
    for item in items:
        assert {"id", "type", "title", "author", "issued", "container-title"} <= set(item)
    minillm = next(i for i in items if i["id"] == "gu2023minillm")
    assert minillm["type"] == "paper-conference"
    assert minillm["issued"] == {"date-parts": [[2024]]}  # ICLR 2024
    assert minillm["original-date"] == {"date-parts": [[2023, 6]]}
    distillm = next(i for i in items if i["id"] == "ko2024distillm")
    assert distillm["type"] == "article" and distillm["issued"] == {"date-parts": [[2024, 2]]}
    assert distillm["note"].startswith("Venue: ICML (venue year not known")
    assert minillm["author"][0] == {"family": "Gu", "given": "Yuxian"}
    assert minillm["URL"] == "https://arxiv.org/abs/2306.08543"
    assert minillm["number"] == "arXiv:2306.08543"
    alpaca = next(i for i in items if i["id"] == "taori2023alpaca")
    assert alpaca["type"] == "article" and "number" not in alpaca


def test_csl_json_of_the_real_kb_parses(real_kb: KnowledgeBase) -> None:
    """Every real paper becomes a CSL item with a title and a year."""
    items = json.loads(to_csl_json(list(real_kb.papers.values())))
    assert len(items) == len(real_kb.papers)
    assert all(i["title"] and i["issued"]["date-parts"][0][0] >= 1990 for i in items)


def test_month_is_written_as_a_bibtex_macro() -> None:
    """``month = jun`` (a macro styles can localise), not the string ``{jun}``."""
    from kbtool.export.bibtex import to_bibtex

    paper = kbtool.Paper(id="x2023y", title="Y", year=2023, month=6, venue="arXiv")
    text = to_bibtex([paper])
    assert "month = jun," in text and "{jun}" not in text


def test_a_large_export_writes_in_place_without_the_deep_copy_warning(
    real_kb: KnowledgeBase, caplog: pytest.LogCaptureFixture
) -> None:
    """A library above bibtexparser's large-library threshold is written with an in-place
    unparse stack: no warning from bibtexparser, and the same text as its default stack."""
    from bibtexparser import entrypoint
    from bibtexparser.library import Library

    from kbtool.export.bibtex import _entry

    threshold = getattr(entrypoint, "LARGE_LIBRARY_WARNING_THRESHOLD", 10_000)
    real = list(real_kb.papers.values())
    papers = [real[i % len(real)].model_copy(update={"id": f"p{i}"}) for i in range(threshold + 1)]
    with caplog.at_level(logging.WARNING):
        text = to_bibtex(papers)
    assert not [r for r in caplog.records if r.name.startswith("bibtexparser")]
    default = bibtexparser.write_string(Library([_entry(p) for p in papers[:300]]))
    assert to_bibtex(papers[:300]) == default
    assert text.count("\n@") + text.startswith("@") == threshold + 1


def test_a_library_is_its_entries_joined_by_blank_lines(real_kb: KnowledgeBase) -> None:
    """The site writes each paper's entry once and joins entries for the downloads; that must
    be the text bibtexparser writes for the whole library."""
    papers = list(real_kb.papers.values())
    assert "\n\n".join(to_bibtex([p]) for p in papers) == to_bibtex(papers)
