"""Render a knowledge base into the markdown sources of the site (jinja2 templates in ``site/``).

Safety rule: every string that comes from the data reaches a page only through a jinja2
expression with autoescape on, inside a block-level HTML element, so markdown never parses it
(no markdown or snippet syntax can be injected) and HTML in titles shows as text. Page titles
go to mkdocs as HTML-escaped front matter because the theme inserts titles as HTML.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Paper
from kbtool.core.query_index import normalize_text
from kbtool.core.taxonomy import bundled_vocabulary
from kbtool.site.background import MIN_PAPERS, BackgroundJob
from kbtool.site.benchmark import read_benchmark
from kbtool.site.figures import statistics_figures
from kbtool.site.mathml import FormulaError, latex_to_mathml
from kbtool.site.method_code import MethodCodeReader
from kbtool.site.new_since_survey import PAGE as NEW_SINCE_SURVEY_PAGE
from kbtool.site.new_since_survey import render_page as render_new_since_survey
from kbtool.site.new_since_survey import row_facets, site_globals
from kbtool.site.paper_pages import (
    PaperPageCache,
    paper_keys,
    render_paper_pages,
    shared_inputs,
)
from kbtool.site.refimpl import ReferenceImplError, package_dir
from kbtool.site.templating import front_matter, make_env
from kbtool.site.zoo import read_zoo

SITE_SRC = Path(__file__).resolve().parent.parent.parent / "site"
ASSETS_DIR = "kb-assets"
NEWEST = 12

ROLES = (
    (
        "advancing-small-models",
        "Advancing small models",
        "A strong, often proprietary teacher's capabilities are transferred to smaller open "
        "students.",
    ),
    (
        "compression",
        "Compression",
        "A large open model is made smaller and cheaper to run while keeping its performance.",
    ),
    (
        "self-improvement",
        "Self-improvement",
        "A model distils its own outputs or feedback back into itself, acting as its own teacher.",
    ),
)

SURVEY_BIBTEX = """@article{xu2024survey,
  title   = {A Survey on Knowledge Distillation of Large Language Models},
  author  = {Xu, Xiaohan and Li, Ming and Tao, Chongyang and Shen, Tao and Cheng, Reynold
             and Li, Jinyang and Xu, Can and Tao, Dacheng and Zhou, Tianyi},
  journal = {arXiv preprint arXiv:2402.13116},
  year    = {2024}
}"""


def fragment_marker(name: str) -> str:
    """The placeholder of a set-aside block of HTML in a page (see ``_Renderer.fragment``)."""
    return f'<div data-kb-fragment="{name}"></div>'


class SiteRenderError(RuntimeError):
    """The knowledge base cannot be rendered (e.g. a loss name that resolves to no function)."""


@dataclass
class RenderResult:
    """What was written: markdown pages by kind, download files, the nav, notes for the log."""

    docs_dir: Path
    pages: dict[str, list[str]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    nav: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fragments: dict[str, str] = field(default_factory=dict)


def _exporters() -> tuple[Callable[[list[Paper]], str], Callable[[list[Paper]], str], Any]:
    """The lead's BibTeX and CSL/JSON exporters, imported only when a site is rendered."""
    from kbtool.export.bibtex import to_bibtex
    from kbtool.export.csl import to_csl_json
    from kbtool.export.json_export import to_json

    return to_bibtex, to_csl_json, to_json


class _Renderer:
    def __init__(
        self,
        kb: KnowledgeBase,
        docs: Path,
        site_src: Path,
        benchmark: Path | None,
        zoo_dir: Path | None = None,
        paper_cache: PaperPageCache | None = None,
        bytecode_dir: Path | None = None,
    ):
        self.kb = kb
        self.docs = docs
        self.zoo = read_zoo(zoo_dir, docs)
        self.env = make_env(site_src / "templates", bytecode_dir)
        self.benchmark_path = benchmark
        self.result = RenderResult(docs_dir=docs)
        self.to_bibtex, self.to_csl_json, self.to_json = _exporters()
        self.counts = {nid: kb.count_under(nid) for nid in kb.nodes}
        self.pkg_dir = package_dir()
        self.site_src = site_src
        self.paper_cache = paper_cache if paper_cache is not None else PaperPageCache()
        self.bib_entries: dict[str, str] = {}
        self.base_globals = {"kb": kb, "counts": self.counts, **site_globals(kb)}
        self.env.globals["fragment"] = self.fragment
        self.env.globals["cached_rows"] = self.paper_cache.rows
        shared = shared_inputs(kb, site_src, repr(ROLES))
        self.paper_cache.keys = paper_keys(kb, shared)

    # -- helpers ------------------------------------------------------------------------------
    def write(self, rel: str, template: str, kind: str, **context: Any) -> None:
        depth = rel.count("/")
        text = self.env.get_template(template).render(
            **self.base_globals, base="../" * depth, **context
        )
        self.write_file(rel, text)
        self.result.pages.setdefault(kind, []).append(rel)

    def write_file(self, rel: str, text: str) -> None:
        path = self.docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")

    def fragment(self, html: str) -> Markup:
        """Set a long block of HTML (a paper table) aside: the page gets a marker that the
        build replaces with it in the finished page, so markdown, the search indexer and the
        theme do not parse thousands of rows (papers are found through their own pages)."""
        name = hashlib.blake2b(str(html).encode(), digest_size=16).hexdigest()
        self.result.fragments[name] = str(html)
        return Markup(fragment_marker(name))

    # -- pages --------------------------------------------------------------------------------
    def home(self) -> None:
        role_counts = Counter(r.value for p in self.kb.papers.values() for r in p.roles)
        self.write(
            "index.md",
            "home.md.j2",
            "home",
            front_matter=front_matter("Home", hide=["navigation", "toc"]),
            stats=self.kb.stats(),
            roles=ROLES,
            role_counts={r[0]: role_counts.get(r[0], 0) for r in ROLES},
            newest=list(self.kb.papers.values())[:NEWEST],
            survey_bibtex=SURVEY_BIBTEX,
        )

    def taxonomy(self) -> None:
        self.write("taxonomy.md", "taxonomy.md.j2", "index", front_matter=front_matter("Taxonomy"))
        direct_counts = self.kb.stats()["per_node"]
        for node in self.kb.nodes.values():
            self.write(
                f"taxonomy/{node.id}.md",
                "node.md.j2",
                "node",
                front_matter=front_matter(node.name),
                node=node,
                papers=self.kb.papers_under(node.id),
                direct_count=direct_counts[node.id],
                methods=self.kb.methods_under(node.id),
            )

    def paper_pages(self) -> None:
        """Every paper's page (the BibTeX downloads need their entries)."""
        self.bib_entries = render_paper_pages(
            self.kb,
            self.env.get_template("paper.md.j2"),
            self.write_file,
            front_matter,
            self.to_bibtex,
            {r[0]: r[1] for r in ROLES},
            self.paper_cache,
        )
        self.result.pages["paper"] = [f"papers/{pid}.md" for pid in self.kb.papers]
        for stale in set(self.paper_cache.old) - set(self.paper_cache.new):
            (self.docs / stale).unlink(missing_ok=True)

    def paper_index(self) -> None:
        self.write(
            "papers.md",
            "papers.md.j2",
            "index",
            front_matter=front_matter(
                "Papers", hide=["navigation", "toc"], search={"exclude": True}
            ),
            papers=list(self.kb.papers.values()),
            facets=self.facets,
            row_attrs={
                p.id: self.paper_cache.attrs(p, self._row_attrs) for p in self.kb.papers.values()
            },
        )

    def _row_attrs(self, paper: Paper) -> Markup:
        kb = self.kb
        nodes = sorted({a.id for nid in paper.nodes for a in kb.ancestors(nid)})
        attrs = {
            "data-year": str(paper.year),
            "data-venue": normalize_text(paper.venue),
            "data-code": "yes" if paper.has_code else "no",
            "data-pillars": " ".join(sorted({kb.pillar_of(n) for n in paper.nodes})),
            "data-nodes": " ".join(nodes),
            "data-teachers": "|".join(sorted({normalize_text(t) for t in paper.teachers})),
            "data-objectives": " ".join(paper.objectives),
            "data-text": normalize_text(paper.title + " " + " ".join(paper.authors)),
            **row_facets(kb, paper),
        }
        return Markup(" ".join(f'{k}="{escape(v, quote=True)}"' for k, v in attrs.items()))

    @functools.cached_property
    def facets(self) -> dict[str, Any]:
        """The paper index's filter choices (also the statistics' teacher counts)."""
        kb = self.kb
        papers = list(kb.papers.values())

        def ranked(values: Iterable[str]) -> list[tuple[str, str, int]]:
            counts: Counter[str] = Counter()
            spellings: dict[str, Counter[str]] = {}
            for value in values:
                key = normalize_text(value)
                counts[key] += 1
                spellings.setdefault(key, Counter())[value] += 1
            order = sorted(counts, key=lambda k: (-counts[k], k))
            return [(k, _most_common(spellings[k]), counts[k]) for k in order]

        return {
            "pillars": [(n.id, n.name) for n in kb.children(None)],
            "nodes": [(n.id, n.name, len(kb.ancestors(n.id)) - 1) for n in kb.nodes.values()],
            "years": sorted({p.year for p in papers}, reverse=True),
            "venues": ranked(p.venue for p in papers),
            "teachers": ranked(t for p in papers for t in dict.fromkeys(p.teachers)),
            "objectives": [
                (o, kb.nodes[o].name if o in kb.nodes else o)
                for o in bundled_vocabulary().objectives
            ],
        }

    def methods(self) -> None:
        paper_counts = {m.id: len(self.kb.papers_using(m.id)) for m in self.kb.methods.values()}
        self.write(
            "methods.md",
            "methods.md.j2",
            "index",
            front_matter=front_matter("Methods"),
            methods=list(self.kb.methods.values()),
            paper_counts=paper_counts,
            with_loss=sum(1 for m in self.kb.methods.values() if m.loss),
        )
        from kbtool.core.graph import method_relations

        reader = MethodCodeReader(self.pkg_dir)
        for method in self.kb.methods.values():
            try:
                code = reader.read(method)
            except ReferenceImplError as exc:
                raise SiteRenderError(str(exc)) from exc
            try:
                mathml: Markup | None = Markup(latex_to_mathml(method.formula, display=True))
            except FormulaError as exc:
                mathml = None
                self.result.notes.append(f"method {method.id}: {exc}")
            loss_name = code.loss_name
            self.write(
                f"methods/{method.id}.md",
                "method.md.j2",
                "method",
                front_matter=front_matter(method.name),
                method=method,
                formula_mathml=mathml,
                introducing=[self.kb.papers[p] for p in method.papers if p in self.kb.papers],
                using=[p for p in self.kb.papers_using(method.id) if p.id not in method.papers],
                related=method_relations(self.kb.methods, method.id),
                zoo=self.zoo,
                zoo_row=self.zoo.rows.get(loss_name) if loss_name else None,
                **code.context(),
            )

    def statistics(self) -> None:
        figures = statistics_figures(self.kb, self.counts, self.facets["teachers"])
        for fig in figures:
            self.write_file(f"statistics/{fig['file']}", fig.pop("svg"))
        self.write(
            "statistics.md",
            "statistics.md.j2",
            "index",
            front_matter=front_matter("Statistics"),
            stats=self.kb.stats(),
            plots=figures,
            benchmark=read_benchmark(self.benchmark_path),
            zoo=self.zoo,
        )

    def _download_texts(self) -> dict[str, Callable[[], str]]:
        """Each download file's path and what makes its text: BibTeX, CSL-JSON and JSON of
        every paper, and BibTeX per node."""
        papers = list(self.kb.papers.values())
        texts: dict[str, Callable[[], str]] = {
            "downloads/kd-atlas.bib": lambda: self.bibtex(papers),
            "downloads/kd-atlas.csl.json": lambda: self.to_csl_json(papers),
            "downloads/kd-atlas.json": lambda: self.to_json(self.kb),
        }
        for node_id in self.kb.nodes:
            texts[f"downloads/nodes/{node_id}.bib"] = functools.partial(self._node_bibtex, node_id)
        return texts

    def _node_bibtex(self, node_id: str) -> str:
        return self.bibtex(self.kb.papers_under(node_id))

    def write_download_files(self) -> None:
        """Write every download file (see ``_download_texts``)."""
        for rel, text in self._download_texts().items():
            self.write_file(rel, text())

    def downloads(self) -> None:
        self.result.downloads += list(self._download_texts())
        self.write(
            "downloads.md",
            "downloads.md.j2",
            "index",
            front_matter=front_matter("Downloads"),
            stats=self.kb.stats(),
        )

    def bibtex(self, papers: list[Paper]) -> str:
        """BibTeX of ``papers``: each paper's entry is written once per build (the text of a
        library is its entries joined by blank lines; a test checks this against bibtexparser)."""
        entries = self.bib_entries
        return "\n\n".join(entries.get(p.id) or self.to_bibtex([p]) for p in papers)

    def huggingface(self) -> None:
        self.write(
            "huggingface.md",
            "huggingface.md.j2",
            "index",
            front_matter=front_matter("Use with Hugging Face / TRL"),
        )

    def contributing(self) -> None:
        self.write(
            "contributing.md",
            "contributing.md.j2",
            "index",
            front_matter=front_matter("Contributing"),
            stats=self.kb.stats(),
        )


def _most_common(counter: Counter[str]) -> str:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def render_docs(
    kb: KnowledgeBase,
    docs_dir: Path,
    *,
    site_src: Path = SITE_SRC,
    benchmark_json: Path | None = None,
    zoo_dir: Path | None = None,
    paper_cache: PaperPageCache | None = None,
    bytecode_dir: Path | None = None,
) -> RenderResult:
    """Write every markdown page, SVG plot, download file and asset of the site to ``docs_dir``.

    With a ``paper_cache`` of the previous render into the same ``docs_dir``, paper pages whose
    inputs are unchanged are kept; every other file is removed and written again.
    """
    if not (site_src / "templates").is_dir():
        raise SiteRenderError(f"site sources not found at {site_src} (templates/ is missing)")
    keep = set(paper_cache.old) if paper_cache is not None else set()
    kept = set()
    for rel in _files_below(docs_dir):
        if rel in keep:
            kept.add(rel)
        else:
            os.unlink(docs_dir / rel)
    if paper_cache is not None:
        paper_cache.present = kept
    docs_dir.mkdir(parents=True, exist_ok=True)
    renderer = _Renderer(kb, docs_dir, site_src, benchmark_json, zoo_dir, paper_cache, bytecode_dir)
    renderer.paper_pages()
    # The downloads need only the papers' BibTeX entries: a child writes them from here on.
    files = BackgroundJob(renderer.write_download_files, len(kb.papers) >= MIN_PAPERS)
    try:
        renderer.home()
        renderer.taxonomy()
        renderer.paper_index()
        render_new_since_survey(
            kb, renderer.write, renderer.write_file, front_matter("New since the survey")
        )
        renderer.methods()
        renderer.statistics()
        renderer.downloads()
        renderer.huggingface()
        renderer.contributing()
        shutil.copytree(site_src / "assets", docs_dir / ASSETS_DIR, dirs_exist_ok=True)
        files.wait()
    except BaseException:
        files.abandon()
        raise
    result = renderer.result
    result.nav = [
        {"Home": "index.md"},
        {"Taxonomy": "taxonomy.md"},
        {"Papers": "papers.md"},
        {"New since the survey": NEW_SINCE_SURVEY_PAGE},
        {"Methods": "methods.md"},
        {"Statistics": "statistics.md"},
        {"Downloads": "downloads.md"},
        {"Hugging Face / TRL": "huggingface.md"},
        {"Contributing": "contributing.md"},
    ]
    return result


def _files_below(root: Path) -> list[str]:
    """The paths (relative, with '/') of every file and link below ``root``; none if absent."""
    found = []
    for directory, subdirectories, names in os.walk(root):
        links = [d for d in subdirectories if os.path.islink(os.path.join(directory, d))]
        prefix = os.path.relpath(directory, root).replace(os.sep, "/")
        found += [n if prefix == "." else f"{prefix}/{n}" for n in [*names, *links]]
    return found


def write_mkdocs_config(
    config_path: Path,
    docs_dir: Path,
    site_dir: Path,
    nav: list[dict[str, str]],
    *,
    site_src: Path = SITE_SRC,
    snippets_base: Path | None = None,
) -> Path:
    """Fill ``site/mkdocs.yml`` with this build's directories and nav; write ``config_path``."""
    config = yaml.safe_load((site_src / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs_dir)
    config["site_dir"] = str(site_dir)
    config["nav"] = nav
    # keeps the HTML blocks of paper pages out of Python-Markdown (see html_blocks)
    config["hooks"] = [str(Path(__file__).with_name("html_blocks.py"))]
    base = snippets_base if snippets_base is not None else package_dir().parent
    for i, ext in enumerate(config.get("markdown_extensions", [])):
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            options = dict(ext["pymdownx.snippets"] or {})
            options["base_path"] = [str(base)]
            config["markdown_extensions"][i] = {"pymdownx.snippets": options}
    config_path.write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return config_path
