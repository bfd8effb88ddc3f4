"""The ``kbtool`` command line: exit codes, ``file: field: message`` reports, no tracebacks.

Most tests use typer's CliRunner in-process; two run the real console entry point in a
subprocess (``python -m kbtool``). Commands that write always get a ``--root`` in tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bibtexparser
import pytest
from click.testing import Result
from typer.testing import CliRunner

import kbtool
from kbtool.cli import app
from kbtool.core.loader import load_records

REPO = Path(__file__).resolve().parent.parent
KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
IMPORTER = Path(__file__).parent / "fixtures" / "importer"
BROKEN_FILE = "papers/ko2024distillm.yaml"


def invoke(*args: str | Path, columns: str | None = "1000") -> Result:
    """Run the CLI in-process and return its result (stdout and stderr captured).

    A wide terminal is the default so that checks of message content do not depend on line
    wrapping; ``test_output_lines_are_not_wrapped`` checks the default (no COLUMNS) case.
    """
    return CliRunner(env={"COLUMNS": columns}).invoke(app, [str(a) for a in args])


def no_crash(result: Result) -> None:
    """The command ended through its own error handling: no exception escaped, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


LONG_UNKNOWN_NODE = "medical-healthcare-in-clinical-practice-and-hospitals"


@pytest.fixture
def broken_kb(tmp_path: Path) -> Path:
    """A copy of the fixture KB with two bad papers: year "abc", and an unknown node."""
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root)
    path = root / BROKEN_FILE
    text = path.read_text(encoding="utf-8").replace("year: 2024\n", 'year: "abc"\n')
    path.write_text(text, encoding="utf-8")
    ok = root / "papers" / "li2023chatdoctor.yaml"
    ok.write_text(
        ok.read_text(encoding="utf-8")
        .replace("  - medical-healthcare\n", f"  - {LONG_UNKNOWN_NODE}\n")
        .replace("{node: medical-healthcare,", f"{{node: {LONG_UNKNOWN_NODE},"),
        encoding="utf-8",
    )
    return root


@pytest.fixture
def writable_kb(tmp_path: Path) -> Path:
    """A writable copy of the valid fixture KB."""
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root)
    return root


# --- validate ----------------------------------------------------------------------------------
def test_validate_real_data_exits_0() -> None:
    """The bundled knowledge base is valid."""
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert "valid:" in result.stdout
    assert f"{len(kbtool.load().papers)} papers" in result.stdout


def test_validate_missing_root_exits_1(tmp_path: Path) -> None:
    """A --root that does not exist is a reported problem, not a crash."""
    result = invoke("validate", "--root", tmp_path / "nowhere")
    no_crash(result)
    assert result.exit_code == 1
    assert "(root): knowledge base directory does not exist" in result.stderr


def test_validate_broken_kb_exits_1_with_file_field_lines(broken_kb: Path) -> None:
    """Each problem starts a line with 'file: field: '; no traceback."""
    result = invoke("validate", "--root", broken_kb)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{BROKEN_FILE}: year: ") for line in lines), result.stderr
    assert any(
        line.startswith("papers/li2023chatdoctor.yaml: nodes: unknown node") for line in lines
    ), result.stderr
    assert "2 problem(s) found" in result.stderr
    no_crash(result)
    assert result.stdout == ""


def test_output_lines_are_not_wrapped(broken_kb: Path) -> None:
    """Without a terminal (pipes, CI) every problem and error is printed whole on one line,
    however long, so that grep and editors can use the ``file: field: message`` lines."""
    problems = load_records(broken_kb).problems
    assert any(len(str(p)) > 80 for p in problems)
    lines = invoke("validate", "--root", broken_kb, columns=None).stderr.splitlines()
    for problem in problems:
        assert str(problem) in lines
    key = "x" * 120
    error = invoke("show", key, "--root", KB_SMALL, columns=None).stderr.splitlines()
    assert error == [f"error: no paper, method or node with id or arXiv id {key!r}"]


def test_validate_subprocess_real_data() -> None:
    """The real entry point on the real data: exit 0, nothing on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "kbtool", "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid:" in proc.stdout and proc.stderr == ""


def test_validate_subprocess_broken_kb(broken_kb: Path) -> None:
    """The real entry point on bad data: exit 1, problem lines on stderr, no traceback."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "kbtool", "validate", "--root", str(broken_kb)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
        env=env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{BROKEN_FILE}: year: " in proc.stderr


def test_commands_on_broken_kb_exit_1_without_traceback(broken_kb: Path) -> None:
    """Every reading command refuses invalid data the same way."""
    for args in (["query"], ["stats"], ["show", "gu2023minillm"], ["export", "bibtex"]):
        result = invoke(*args, "--root", broken_kb)
        assert result.exit_code == 1, args
        assert f"{BROKEN_FILE}: year: " in result.stderr, args
        no_crash(result)


# --- query, show, methods, schema ----------------------------------------------------------------
def test_query_json_matches_the_api() -> None:
    """``query --format json`` prints exactly what ``KnowledgeBase.query`` returns."""
    kb = kbtool.load(KB_SMALL)
    result = invoke(
        "query",
        "--node",
        "kd-algorithms",
        "--year-min",
        "2023",
        "--has-code",
        "--format",
        "json",
        "--root",
        KB_SMALL,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = kb.query(node="kd-algorithms", year_min=2023, has_code=True)
    assert (
        [d["id"] for d in data]
        == [p.id for p in expected]
        == [
            "ko2024distillm",
            "gu2023minillm",
            "taori2023alpaca",
        ]
    )
    assert [kbtool.Paper.model_validate(d) for d in data] == expected


def test_query_json_real_data_matches_the_api() -> None:
    """Same on the real data, with the teacher-access filter."""
    result = invoke("query", "--teacher-access", "white-box", "--format", "json")
    assert result.exit_code == 0, result.output
    expected = kbtool.load().query(teacher_access="white-box")
    assert [d["id"] for d in json.loads(result.stdout)] == [p.id for p in expected]
    assert expected


def test_query_cited_by_survey_flag_matches_the_api() -> None:
    for flag, value in (("--cited-by-survey", True), ("--not-cited-by-survey", False)):
        result = invoke("query", flag, "--format", "json", "--root", KB_SMALL)
        assert result.exit_code == 0, result.output
        got = [d["id"] for d in json.loads(result.stdout)]
        assert got == [p.id for p in kbtool.load(KB_SMALL).query(cited_by_survey=value)]
        assert got and all(d["cited_by_survey"] is value for d in json.loads(result.stdout))


def test_query_table_and_unknown_node() -> None:
    """The table names the count; an unknown node is a clear error."""
    ok = invoke("query", "--node", "feature", "--root", KB_SMALL)
    assert ok.exit_code == 0 and "1 paper(s)" in ok.stdout and "gu2023minillm" in ok.stdout
    bad = invoke("query", "--node", "feedbak", "--root", KB_SMALL)
    assert bad.exit_code == 1
    assert "unknown taxonomy node 'feedbak'" in bad.stderr
    no_crash(bad)


def test_show_finds_minillm_by_arxiv_id() -> None:
    """``show 2306.08543 --format json`` on the real data prints the MiniLLM paper's record."""
    result = invoke("show", "2306.08543", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == "gu2023minillm" and data["title"].startswith("MiniLLM")


def test_show_prints_a_readable_summary_by_default() -> None:
    """Without ``--format``, ``show`` prints labelled lines a person reads, not JSON."""
    kb = kbtool.load()
    paper = kb.papers["gu2023minillm"]
    result = invoke("show", "2306.08543", columns="100")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not text.lstrip().startswith("{")
    lines = text.splitlines()
    assert lines[0] == paper.title
    assert any(line.startswith("BibTeX key") and line.endswith(paper.id) for line in lines)
    flat = " ".join(text.split())  # values may wrap onto several lines
    assert paper.authors[0] in flat and f"{paper.venue} {paper.year}" in flat
    for node_id in paper.nodes:
        assert f"{kb.nodes[node_id].name} ({node_id})" in flat
    for method_id in paper.methods:
        assert method_id in text
    assert f"https://arxiv.org/abs/{paper.arxiv_id}" in text


def test_show_method_and_node_summaries() -> None:
    """A method shows its short loss name and formula; a node its children and paper count."""
    kb = kbtool.load(KB_SMALL)
    method = kb.methods["forward-kl"]
    assert method.loss is not None
    result = invoke("show", "forward-kl", "--root", KB_SMALL)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == method.name
    flat = " ".join(result.stdout.split())
    assert method.loss.rsplit(".", 1)[1] in flat and " ".join(method.formula.split()) in flat
    node = invoke("show", "knowledge-elicitation", "--root", KB_SMALL)
    assert node.exit_code == 0, node.output
    for child in kb.children("knowledge-elicitation"):
        assert f"{child.name} ({child.id})" in node.stdout
    assert f"{len(kb.papers_under('knowledge-elicitation'))} (descendants" in node.stdout


def test_tables_fit_80_columns_with_short_loss_names() -> None:
    """At 80 columns ``methods`` shows whole, short loss names (not ``reference_impls...``),
    and ``query`` keeps every id whole; no line is wider than the terminal."""
    kb = kbtool.load()
    result = invoke("methods", columns="80")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "reference_impls" not in result.stdout
    short = {m.loss.rsplit(".", 1)[1] for m in kb.methods.values() if m.loss}
    assert "forward_kl" in short
    cells = {c.strip() for line in result.stdout.splitlines() for c in line.split("│")}
    assert short <= cells, short - cells
    papers = invoke("query", "--node", "knowledge-elicitation", columns="80")
    assert papers.exit_code == 0, papers.output
    assert all(len(line) <= 80 for line in papers.stdout.splitlines()), papers.stdout
    ids = {c.strip() for line in papers.stdout.splitlines() for c in line.split("│")}
    assert {p.id for p in kb.query(node="knowledge-elicitation")} <= ids


def test_search_and_suggest_tables_fit_80_columns() -> None:
    """The ranking tables fit 80 columns too and keep every hit's id whole."""
    from kbtool.retrieval.semantic import search

    text = "cross-tokenizer distillation"
    result = invoke("search", text, "--backend", "lexical", columns="80")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    cells = {c.strip() for line in result.stdout.splitlines() for c in line.split("│")}
    assert {h.id for h in search(kbtool.load(), text, 10, backend="lexical")} <= cells
    title = "Distilling reasoning from a large teacher"
    placed = invoke("suggest", "--title", title, "--method", "lexical", columns="80")
    assert placed.exit_code == 0, placed.output
    assert all(len(line) <= 80 for line in placed.stdout.splitlines()), placed.stdout


def test_narrow_terminal_drops_the_least_important_columns() -> None:
    """Too narrow for every column: some are left out, the table says which, lines still fit."""
    result = invoke("query", "--node", "knowledge-elicitation", columns="50")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 50 for line in result.stdout.splitlines()), result.stdout
    assert "not shown at this width: venue" in " ".join(result.stdout.split())


def test_show_unknown_key() -> None:
    """An unknown key: exit 1 and the key in the message."""
    result = invoke("show", "9999.99999", "--root", KB_SMALL)
    assert result.exit_code == 1 and "'9999.99999'" in result.stderr


@pytest.mark.parametrize("key", ["[/x]", "[bold]zz"])
def test_user_text_with_brackets_is_printed_verbatim(key: str) -> None:
    """Error messages quoting user input are not parsed as console markup (no crash)."""
    result = invoke("show", key, "--root", KB_SMALL)
    no_crash(result)
    assert result.exit_code == 1
    assert key in result.stderr


def test_methods_json() -> None:
    """Methods filtered by teacher access, as JSON."""
    result = invoke(
        "methods", "--teacher-access", "black-box", "--format", "json", "--root", KB_SMALL
    )
    assert result.exit_code == 0
    assert [m["id"] for m in json.loads(result.stdout)] == ["sft-objective"]


def test_schema_prints_json_schema() -> None:
    """``schema`` prints the paper JSON Schema; other kinds by name; bad kind -> exit 1."""
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"id", "title", "arxiv_id", "nodes"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    methods = json.loads(invoke("schema", "--kind", "methods").stdout)
    assert "methods" in methods["properties"]
    bad = invoke("schema", "--kind", "nope")
    assert bad.exit_code == 1 and "unknown schema" in bad.stderr


def test_schema_out_writes_files(tmp_path: Path) -> None:
    """``schema --out DIR`` writes one schema per record kind."""
    result = invoke("schema", "--out", tmp_path)
    assert result.exit_code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["methods.schema.json", "paper.schema.json", "taxonomy.schema.json"]
    for path in tmp_path.iterdir():
        json.loads(path.read_text(encoding="utf-8"))


# --- export --------------------------------------------------------------------------------------
def test_export_bibtex_node_out_file(tmp_path: Path) -> None:
    """``export bibtex --node X --out FILE`` writes exactly the papers under X, no temp files."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "feedback.bib"
    result = invoke("export", "bibtex", "--node", "feedback", "--out", target, "--root", KB_SMALL)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["feedback.bib"]
    library = bibtexparser.parse_string(target.read_text(encoding="utf-8"))
    assert [e.key for e in library.entries] == [
        "bai2022constitutional",
        "gu2023minillm",
        "ko2024distillm",
    ]


def test_export_replaces_existing_file_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final rename fails, the old file is intact and no temporary file is left."""
    target = tmp_path / "all.bib"
    target.write_text("old content\n", encoding="utf-8")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr("kbtool.core.atomic.os.replace", failing_replace)
    result = invoke("export", "bibtex", "--out", target, "--root", KB_SMALL)
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    no_crash(result)
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["all.bib"]


def test_export_to_stdout_and_other_formats() -> None:
    """BibTeX, CSL-JSON and JSON to stdout."""
    bib = invoke("export", "bibtex", "--node", "medical-healthcare", "--root", KB_SMALL)
    # Cureus with no known venue year: the first version, the venue in a note (issue 14)
    assert bib.exit_code == 0 and "@misc{li2023chatdoctor," in bib.stdout
    assert "note = {Venue: Cureus (venue year not known" in bib.stdout
    csl = json.loads(invoke("export", "csl", "--root", KB_SMALL).stdout)
    assert len(csl) == 6
    doc = json.loads(invoke("export", "json", "--root", KB_SMALL).stdout)
    assert (len(doc["nodes"]), len(doc["methods"]), len(doc["papers"])) == (18, 4, 6)
    under = json.loads(invoke("export", "json", "--node", "feature", "--root", KB_SMALL).stdout)
    assert [p["id"] for p in under] == ["gu2023minillm"]


# --- run -----------------------------------------------------------------------------------------
def test_run_unknown_method_is_a_clear_error() -> None:
    """An unknown method for ``run``: exit 1, the name and a hint, no traceback."""
    result = invoke("run", "no-such-method", "--root", KB_SMALL)
    assert result.exit_code == 1
    assert "unknown method 'no-such-method'" in result.stderr
    assert "kbtool methods" in result.stderr
    no_crash(result)


def test_run_a_method_whose_demo_is_a_scenario() -> None:
    """A method with a ``demo`` runs it (speculative KD's interleaved sampling) through the CLI."""
    result = invoke("run", "speculative-kd", "--steps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "KL(teacher||student)" in result.stdout


def test_run_a_method_without_loss_or_demo_is_a_clear_error(writable_kb: Path) -> None:
    methods = writable_kb / "taxonomy" / "methods" / "methods.yaml"
    text = methods.read_text(encoding="utf-8")
    edited = re.sub(r"\n *loss: reference_impls\.minillm_loss", "", text)
    assert edited != text
    methods.write_text(edited, "utf-8")
    result = invoke("run", "minillm", "--root", str(writable_kb))
    assert result.exit_code == 1
    assert "method 'minillm' has no reference loss to run" in result.stderr
    no_crash(result)


# --- imports -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", ["import-awesome", "import-metadata", "import-summary", "import-bibtex"]
)
def test_import_missing_file_exits_1(command: str, writable_kb: Path, tmp_path: Path) -> None:
    """A missing input file: exit 1 and a message naming it; nothing written."""
    missing = tmp_path / "missing-input.txt"
    before = sorted(p.name for p in (writable_kb / "papers").iterdir())
    result = invoke(command, missing, "--root", writable_kb)
    assert result.exit_code == 1
    assert "missing-input.txt" in result.stderr
    assert "no such file" in result.stderr.lower()
    no_crash(result)
    assert sorted(p.name for p in (writable_kb / "papers").iterdir()) == before


def test_import_awesome_missing_metadata_exits_1(writable_kb: Path, tmp_path: Path) -> None:
    """``--metadata`` pointing nowhere is a clear error too."""
    result = invoke(
        "import-awesome",
        IMPORTER / "awesome_v1.md",
        "--metadata",
        tmp_path / "nope.jsonl",
        "--root",
        writable_kb,
    )
    assert result.exit_code == 1 and "nope.jsonl" in result.stderr


def test_import_non_utf8_file_exits_1(writable_kb: Path, tmp_path: Path) -> None:
    """A Latin-1 input file: exit 1 with 'not valid UTF-8'."""
    bad = tmp_path / "list.md"
    bad.write_bytes(b"#### Labeling\n| [**Caf\xe9**](https://arxiv.org/abs/2401.00001) |\n")
    result = invoke("import-awesome", bad, "--root", writable_kb)
    assert result.exit_code == 1 and "not valid UTF-8" in result.stderr


def test_import_awesome_cli_happy_path_and_rerun(tmp_path: Path) -> None:
    """The list import through the CLI: 12 added, then 0 added on the second run."""
    root = tmp_path / "kb"
    (root / "taxonomy").mkdir(parents=True)
    shutil.copy(KB_SMALL / "taxonomy" / "nodes.yaml", root / "taxonomy" / "nodes.yaml")
    (root / "papers").mkdir()
    first = invoke("import-awesome", IMPORTER / "awesome_v1.md", "--root", root)
    assert first.exit_code == 0, first.output
    assert "18 rows, 12 distinct papers: 12 added, 0 updated, 4 conflict(s)" in first.stdout
    second = invoke("import-awesome", IMPORTER / "awesome_v1.md", "--root", root)
    assert second.exit_code == 0 and "0 added, 0 updated" in second.stdout
    assert invoke("validate", "--root", root).exit_code == 0


def test_import_summary_unmatched_rows_exit_1(writable_kb: Path) -> None:
    """Rows that match no paper are listed and make the command fail."""
    result = invoke("import-summary", IMPORTER / "summary.tsv", "--root", writable_kb)
    assert result.exit_code == 1
    assert "unmatched: row 1: Lion (Jiang et al., 2023b)" in result.stdout


def test_import_bibtex_adds_and_skips(writable_kb: Path, tmp_path: Path) -> None:
    """A .bib with one known and one new entry: one added, one skipped; the KB stays valid."""
    bib = tmp_path / "new.bib"
    bib.write_text(
        "@misc{hinton2015distilling, title={{Distilling the Knowledge in a Neural Network}},"
        " year={2015}, eprint={1503.02531}, archivePrefix={arXiv}}\n"
        "@inproceedings{kim2016sequence, title={{Sequence-Level Knowledge Distillation}},"
        " author={Yoon Kim and Alexander M. Rush}, year={2016}, booktitle={EMNLP}}\n",
        encoding="utf-8",
    )
    result = invoke("import-bibtex", bib, "--root", writable_kb)
    assert result.exit_code == 0, result.output
    assert "1 added, 1 already present" in result.stdout
    kb = kbtool.load(writable_kb)
    assert kb.papers["kim2016sequence"].authors == ["Yoon Kim", "Alexander M. Rush"]


def test_import_bibtex_invalid_entry_writes_nothing(writable_kb: Path, tmp_path: Path) -> None:
    """An entry with a bad year is reported as file: entry.field and nothing is written."""
    bib = tmp_path / "bad.bib"
    bib.write_text(
        "@misc{good2024, title={{Fine}}, year={2024}}\n"
        "@misc{bad2024, title={{Bad}}, year={soon}}\n",
        encoding="utf-8",
    )
    before = sorted(p.name for p in (writable_kb / "papers").iterdir())
    result = invoke("import-bibtex", bib, "--root", writable_kb)
    assert result.exit_code == 1
    assert f"{bib}: bad2024.year: " in result.stderr
    assert sorted(p.name for p in (writable_kb / "papers").iterdir()) == before


def test_no_arguments_shows_help() -> None:
    """``kbtool`` alone prints the command list."""
    result = invoke()
    assert "validate" in result.output


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (0600); the result must have open()'s mode instead."""
    import os

    from kbtool.core.atomic import write_text_atomic

    umask = os.umask(0o022)
    try:
        target = tmp_path / "out.bib"
        write_text_atomic(target, "x")
        assert target.stat().st_mode & 0o777 == 0o644
        target.chmod(0o640)
        write_text_atomic(target, "y")  # replacing keeps the existing mode
        assert target.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


# --- kbtool run --hf --------------------------------------------------------------------------
def test_run_hf_trains_tiny_hugging_face_models() -> None:
    """`kbtool run <method> --hf`: the DistillationTrainer on tiny models; KL is reported."""
    result = invoke("run", "forward-kl", "--hf", "--steps", "3")
    assert result.exit_code == 0, result.output
    assert "forward_kl on tiny llama through the DistillationTrainer" in result.stdout
    assert "held-out KL(teacher || student)" in result.stdout


def test_run_hf_refuses_a_loss_the_trainer_cannot_feed() -> None:
    result = invoke("run", "dpo-objective", "--hf", "--steps", "1")
    assert result.exit_code == 1
    assert "needs inputs the DistillationTrainer does not build" in result.stderr
    assert "Traceback" not in result.output
