"""The ``kbtool`` command line: validate, query, import, export, run demos, build the site.

The one typer ``app``; shared consoles, options and the error handler are in
:mod:`kbtool.cli.common`, ``search`` and ``suggest`` in :mod:`kbtool.cli.search`.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kbtool.cli.common import (
    CliError,
    FormatOption,
    NodeOption,
    OutOption,
    OutputFormat,
    RootOption,
    err,
    friendly,
    out,
    print_problems,
    read_text,
)
from kbtool.cli.import_papers import import_papers_cmd
from kbtool.cli.progress import progress
from kbtool.cli.run_demos import run_cmd, zoo_cmd
from kbtool.cli.search import search_cmd, suggest_cmd
from kbtool.cli.show import summary
from kbtool.cli.tables import Column, fitted_table, short_loss
from kbtool.core.atomic import write_text_atomic
from kbtool.core.knowledge_base import KnowledgeBase, load
from kbtool.core.loader import load_records
from kbtool.core.paths import default_root
from kbtool.core.schema import SCHEMAS, schema_of, write_schemas
from kbtool.export.json_export import papers_to_json, to_json
from kbtool.ingest.awesome_import import import_awesome
from kbtool.ingest.metadata import load_metadata
from kbtool.ingest.metadata_import import import_metadata
from kbtool.ingest.survey_table import import_summary

app = typer.Typer(
    help="KD Atlas: a typed knowledge base of knowledge distillation of LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
export_app = typer.Typer(help="Export papers as BibTeX, CSL-JSON or JSON.", no_args_is_help=True)
app.add_typer(export_app, name="export")


def _kb(root: Path | None) -> KnowledgeBase:
    return load(root)


# --- validation, summary, schema -------------------------------------------------------------
@app.command()
@friendly
def validate(root: RootOption = None) -> None:
    """Validate every file of the knowledge base; print each problem as file: field: message."""
    records = load_records(root)
    if records.problems:
        print_problems(records.problems)
        raise typer.Exit(1)
    _print_summary(KnowledgeBase(records))


def _print_summary(kb: KnowledgeBase) -> None:
    stats = kb.stats()
    out.print(
        f"[green]valid:[/green] {stats['nodes']} taxonomy nodes, {stats['methods']} methods, "
        f"{stats['papers']} papers ({stats['placed_papers']} placed, "
        f"{stats['cited_only_papers']} cited by the survey only, {stats['with_code']} with code)"
    )
    table = Table("pillar", "papers")
    for pillar, count in stats["per_pillar"].items():
        table.add_row(kb.nodes[pillar].name, str(count))
    out.print(table)


@app.command()
@friendly
def stats(root: RootOption = None) -> None:
    """Print counts of the knowledge base as JSON."""
    out.print_json(json.dumps(_kb(root).stats()))


@app.command()
@friendly
def schema(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory for *.schema.json.")
    ] = None,
    kind: Annotated[str, typer.Option(help="paper, methods or taxonomy (printed).")] = "paper",
) -> None:
    """Export the JSON Schema of the paper, method and taxonomy files."""
    if out_dir is not None:
        for path in write_schemas(out_dir):
            out.print(f"wrote {path}")
        return
    if kind not in SCHEMAS:
        raise CliError(f"unknown schema {kind!r}; choose one of {', '.join(SCHEMAS)}")
    sys.stdout.write(json.dumps(schema_of(kind), indent=2, sort_keys=True) + "\n")


# --- queries ---------------------------------------------------------------------------------
@app.command()
@friendly
def query(
    node: Annotated[str | None, typer.Option(help="Taxonomy node (descendants included).")] = None,
    method: Annotated[str | None, typer.Option(help="Method id.")] = None,
    year_min: Annotated[int | None, typer.Option(help="Earliest year.")] = None,
    year_max: Annotated[int | None, typer.Option(help="Latest year.")] = None,
    venue: Annotated[str | None, typer.Option(help="Venue (substring).")] = None,
    has_code: Annotated[
        bool | None, typer.Option("--has-code/--no-code", help="Code links.")
    ] = None,
    teacher: Annotated[str | None, typer.Option(help="Teacher model (substring).")] = None,
    student: Annotated[str | None, typer.Option(help="Student model (substring).")] = None,
    objective: Annotated[str | None, typer.Option(help="Distillation-algorithm node id.")] = None,
    elicitation: Annotated[str | None, typer.Option(help="Knowledge-elicitation node id.")] = None,
    teacher_access: Annotated[str | None, typer.Option(help="black-box or white-box.")] = None,
    text: Annotated[str | None, typer.Option(help="Words in the title or authors.")] = None,
    cited_by_survey: Annotated[
        bool | None,
        typer.Option("--cited-by-survey/--not-cited-by-survey", help="In the survey's references."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="First version from YYYY-MM on.")] = None,
    basis: Annotated[str | None, typer.Option(help="survey-list, crosswalk or reviewed.")] = None,
    origin: Annotated[str | None, typer.Option(help="Node origin: survey or kd-atlas.")] = None,
    output: FormatOption = OutputFormat.table,
    root: RootOption = None,
) -> None:
    """Find papers with the same filters as ``KnowledgeBase.query``."""
    kb = _kb(root)
    papers = kb.query(
        node=node,
        method=method,
        year_min=year_min,
        year_max=year_max,
        venue=venue,
        has_code=has_code,
        teacher=teacher,
        student=student,
        objective=objective,
        elicitation=elicitation,
        teacher_access=teacher_access,
        text=text,
        cited_by_survey=cited_by_survey,
        since=since,
        basis=basis,
        origin=origin,
    )
    if output is OutputFormat.json:
        sys.stdout.write(papers_to_json(papers))
        return
    columns = [
        Column("id", keep=5),
        Column("year", keep=4),
        Column("venue", keep=1, wrap=True, min_width=8),
        Column("title", keep=3, wrap=True, min_width=20),
        Column("code", keep=2),
    ]
    rows = [[p.id, str(p.year), p.venue, p.title, "yes" if p.code else ""] for p in papers]
    out.print(fitted_table(columns, rows, width=out.width, title=f"{len(papers)} paper(s)"))


@app.command()
@friendly
def methods(
    teacher_access: Annotated[str | None, typer.Option(help="black-box or white-box.")] = None,
    on_policy: Annotated[bool | None, typer.Option("--on-policy/--off-policy")] = None,
    same_tokenizer: Annotated[bool | None, typer.Option("--same-tokenizer/--any-tokenizer")] = None,
    node: Annotated[str | None, typer.Option(help="Taxonomy node.")] = None,
    output: FormatOption = OutputFormat.table,
    root: RootOption = None,
) -> None:
    """List method nodes, filtered by their properties."""
    found = _kb(root).methods_where(
        teacher_access=teacher_access,
        on_policy=on_policy,
        same_tokenizer_required=same_tokenizer,
        node=node,
    )
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([m.model_dump(mode="json") for m in found], indent=2) + "\n")
        return
    columns = [
        Column("id", keep=5),
        Column("name", keep=3, wrap=True, min_width=12),
        Column("teacher", keep=1),
        Column("on-policy", keep=2),
        Column("loss", keep=4),
    ]
    rows = [
        [m.id, m.name, m.teacher_access.value, "yes" if m.on_policy else "no", short_loss(m.loss)]
        for m in found
    ]
    out.print(fitted_table(columns, rows, width=out.width, title=f"{len(found)} method(s)"))


class ShowFormat(StrEnum):
    """How ``show`` prints: a summary for people, or the stored record as JSON."""

    text = "text"
    json = "json"


@app.command()
@friendly
def show(
    key: str,
    output: Annotated[
        ShowFormat, typer.Option("--format", help="text (a summary) or json (the record).")
    ] = ShowFormat.text,
    root: RootOption = None,
) -> None:
    """Print one paper, method or node (by id or arXiv id): a summary, or JSON."""
    kb = _kb(root)
    item = kb.get(key)
    if output is ShowFormat.json:
        data = item.model_dump(mode="json")
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    for part in summary(kb, item, out.width):
        out.print(part, highlight=False)


# --- export ----------------------------------------------------------------------------------
def _selection(root: Path | None, node: str | None) -> tuple[KnowledgeBase, list[Any]]:
    kb = _kb(root)
    papers = kb.papers_under(node) if node else list(kb.papers.values())
    return kb, sorted(papers, key=lambda p: p.id)


def _emit(text: str, path: Path | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    write_text_atomic(path, text)
    err.print(f"wrote {path}")


@export_app.command("bibtex")
@friendly
def export_bibtex(
    node: NodeOption = None, out_path: OutOption = None, root: RootOption = None
) -> None:
    """BibTeX of all papers, or of the papers under a node."""
    from kbtool.export.bibtex import to_bibtex  # deferred: bibtexparser is slow to import

    _, papers = _selection(root, node)
    _emit(to_bibtex(papers), out_path)


@export_app.command("csl")
@friendly
def export_csl(
    node: NodeOption = None, out_path: OutOption = None, root: RootOption = None
) -> None:
    """CSL-JSON of all papers, or of the papers under a node."""
    from kbtool.export.csl import to_csl_json  # deferred: shares bibtex's venue kinds

    _, papers = _selection(root, node)
    _emit(to_csl_json(papers), out_path)


@export_app.command("json")
@friendly
def export_json(
    node: NodeOption = None, out_path: OutOption = None, root: RootOption = None
) -> None:
    """JSON of the whole knowledge base, or of the papers under a node."""
    kb, papers = _selection(root, node)
    _emit(to_json(kb) if node is None else papers_to_json(papers), out_path)


# --- import ----------------------------------------------------------------------------------
def _root_dir(root: Path | None) -> Path:
    return root if root is not None else default_root()


@app.command("import-awesome")
@friendly
def import_awesome_cmd(
    file: Annotated[Path, typer.Argument(help="The upstream list's README (markdown).")],
    metadata: Annotated[
        Path | None, typer.Option(help="paper-metadata.jsonl for authors and ids.")
    ] = None,
    root: RootOption = None,
) -> None:
    """Merge the upstream paper list into papers/ (idempotent) and write IMPORT_REPORT.md."""
    meta = load_metadata(metadata) if metadata else None
    text = read_text(file)
    report = import_awesome(_root_dir(root), text, source_name=file.name, meta=meta)
    out.print(
        f"{report.rows} rows, {report.papers_in_list} distinct papers: "
        f"{len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.conflicts)} conflict(s) reported in papers/IMPORT_REPORT.md"
    )
    for paper_id in report.added:
        out.print(f"  + {paper_id}")
    for paper_id in report.updated:
        out.print(f"  ~ {paper_id}")


@app.command("import-metadata")
@friendly
def import_metadata_cmd(
    file: Annotated[Path, typer.Argument(help="paper-metadata.jsonl")], root: RootOption = None
) -> None:
    """Fill authors and arXiv ids; add the survey's other cited works (idempotent)."""
    report = import_metadata(_root_dir(root), load_metadata(file), meta_source=file.name)
    out.print(f"{len(report.added)} added, {len(report.updated)} updated")
    for note in report.notes:
        out.print(f"  note: {note}")


@app.command("import-summary")
@friendly
def import_summary_cmd(
    file: Annotated[Path, typer.Argument(help="survey-skill-summary.tsv")], root: RootOption = None
) -> None:
    """Attach the survey's Table 3 facts to the matching papers (idempotent)."""
    try:
        report = import_summary(_root_dir(root), read_text(file))
    except ValueError as exc:
        raise CliError(f"{file}: {exc}") from exc
    out.print(
        f"{len(report.attached)} rows attached to {len(set(report.attached.values()))} papers, "
        f"{len(set(report.updated))} files updated, {len(report.unmatched)} unmatched"
    )
    for line in report.unmatched:
        out.print(f"  unmatched: {line}")
    if report.unmatched:
        raise typer.Exit(1)


@app.command("import-bibtex")
@friendly
def import_bibtex_cmd(
    file: Annotated[Path, typer.Argument(help="A .bib file.")], root: RootOption = None
) -> None:
    """Add the entries of a BibTeX file as papers (existing ids and arXiv ids are skipped)."""
    from kbtool.ingest.bibtex_import import import_bibtex  # deferred: bibtexparser

    report = import_bibtex(_root_dir(root), read_text(file), source=str(file))
    out.print(f"{len(report.added)} added, {len(report.skipped)} already present")
    for line in report.skipped:
        out.print(f"  skipped: {line}")


app.command("import-papers")(friendly(import_papers_cmd))


# --- reference implementations ---------------------------------------------------------------
app.command("run")(friendly(run_cmd))
app.command(
    "zoo",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(zoo_cmd)


# --- semantic search and placement (kbtool[semantic] optional) ------------------------------
app.command("search")(search_cmd)
app.command("suggest")(suggest_cmd)


# --- site ------------------------------------------------------------------------------------
@app.command("build-site")
@friendly
def build_site_cmd(
    root: RootOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("build/site"),
    incremental: Annotated[
        bool,
        typer.Option(help="Reuse the unchanged pages of the previous build (same output)."),
    ] = False,
) -> None:
    """Validate the knowledge base and build the static site (mkdocs, strict)."""

    kb = _kb(root)
    result = _build(kb, out_dir, incremental)
    out.print(
        f"site built in {result.out} ({sum(result.pages.values())} pages, {result.seconds:.1f} s)"
    )


def _build(kb: KnowledgeBase, out_dir: Path, incremental: bool) -> Any:  # noqa: ANN401 - BuildResult
    from kbtool.site import SiteBuildError, build_site  # deferred: jinja2, mkdocs config

    with progress("building the site (render pages, then mkdocs build --strict)"):
        try:
            return build_site(kb, out_dir, incremental=incremental)
        except SiteBuildError as exc:
            raise CliError(str(exc)) from exc


@app.command()
@friendly
def serve(
    root: RootOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    out_dir: Annotated[Path, typer.Option("--out", help="Build directory.")] = Path("build/site"),
) -> None:
    """Validate, build the site and serve it on http://127.0.0.1:PORT/ (Ctrl-C stops); edits
    to taxonomy/ and papers/ rebuild it incrementally."""
    from kbtool.site import serve_site  # deferred, as in ``_build``
    from kbtool.site.watch import SiteWatcher

    kb = _kb(root)
    _print_summary(kb)
    result = _build(kb, out_dir, incremental=True)
    serve_site(result, port=port, watcher=SiteWatcher(kb.root, result.out))


def main() -> None:
    """Console-script entry point."""
    app()
