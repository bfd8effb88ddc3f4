"""Build the static site: render markdown, run ``mkdocs build --strict`` (in this process, with
a page cache for incremental rebuilds), swap it into place.

The build happens in a temporary directory next to the output and is renamed into place only
when mkdocs succeeded, so a failed build never leaves a half-written site behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydantic_core

import kbtool
from kbtool.core.atomic import write_bytes_atomic
from kbtool.core.gc_pause import long_lived_set_aside
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.site.mkdocs_run import MkdocsFailedError, PageCache, run_mkdocs
from kbtool.site.paper_pages import PaperPageCache
from kbtool.site.paper_pages import read_cache as read_paper_cache
from kbtool.site.render import SITE_SRC, render_docs, write_mkdocs_config
from kbtool.site.zoo import DEFAULT_ZOO_DIR

DEFAULT_OUT = Path("build") / "site"
DEFAULT_BENCHMARK_JSON = Path("build") / "benchmarks" / "fused_loss.json"
PAPER_PAGES = "paper-pages.json"


class SiteBuildError(RuntimeError):
    """mkdocs failed (warnings count as failures in strict mode); carries its output."""


@dataclass
class BuildResult:
    """Where the site went, what it contains and how long each stage took."""

    out: Path
    pages: dict[str, int] = field(default_factory=dict)
    render_seconds: float = 0.0
    mkdocs_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    mkdocs_log: str = ""

    @property
    def seconds(self) -> float:
        """Total build time."""
        return self.render_seconds + self.mkdocs_seconds


def build_site(
    kb: KnowledgeBase | Path | str | None = None,
    out: Path | str = DEFAULT_OUT,
    *,
    benchmark_json: Path | str | None = DEFAULT_BENCHMARK_JSON,
    zoo_dir: Path | str | None = DEFAULT_ZOO_DIR,
    site_src: Path = SITE_SRC,
    keep_docs: Path | str | None = None,
    incremental: bool = False,
    cache_dir: Path | str | None = None,
) -> BuildResult:
    """Build the site of ``kb`` (a loaded knowledge base, or its root directory; default: the
    bundled one) into ``out``, atomically. Returns what was built; ``result.out`` is the path.

    ``benchmark_json`` and the loss zoo's ``zoo_dir/zoo.json`` are shown on the statistics
    (and method) pages when they exist. ``keep_docs``, when
    given, receives a copy of the generated markdown (for debugging templates).

    Every build stores each page's HTML in a page cache (``cache_dir``,
    default ``<knowledge base>/.cache/kbtool/site``); an ``incremental`` build reuses the pages
    whose inputs did not change, and its output is byte for byte that of a full build.
    """
    if not isinstance(kb, KnowledgeBase):
        kb = kbtool.load(kb)
    out_path = Path(out).resolve()
    # Builds make many short-lived objects: the collector leaves the loaded knowledge base be.
    with long_lived_set_aside():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.build-", dir=out_path.parent))
        try:
            started = time.perf_counter()
            directory = _cache_dir(kb, cache_dir)
            html = tmp / "html"
            docs = directory / "docs" if directory is not None else tmp / "docs"
            paper_cache = PaperPageCache()
            if directory is not None:
                if incremental:
                    paper_cache = read_paper_cache(directory / PAPER_PAGES)
                # Until this build succeeds, docs/ matches no saved state.
                (directory / PAPER_PAGES).unlink(missing_ok=True)
            rendered = render_docs(
                kb,
                docs,
                site_src=site_src,
                benchmark_json=Path(benchmark_json) if benchmark_json is not None else None,
                zoo_dir=Path(zoo_dir) if zoo_dir is not None else None,
                paper_cache=paper_cache,
                bytecode_dir=directory / "templates" if directory is not None else None,
            )
            config = write_mkdocs_config(
                tmp / "mkdocs.yml", docs, html, rendered.nav, site_src=site_src
            )
            result = BuildResult(
                out=out_path,
                pages={kind: len(pages) for kind, pages in rendered.pages.items()},
                render_seconds=time.perf_counter() - started,
                notes=rendered.notes,
            )
            if keep_docs is not None:
                shutil.rmtree(keep_docs, ignore_errors=True)
                shutil.copytree(docs, keep_docs)
            started = time.perf_counter()
            cache = PageCache(directory, reuse=incremental)
            try:
                result.mkdocs_log = run_mkdocs(config, cache, rendered.fragments)
            except MkdocsFailedError as exc:
                result.mkdocs_log = exc.log
                raise SiteBuildError(f"mkdocs build --strict failed:\n{exc.log}") from exc
            finally:
                result.mkdocs_seconds = time.perf_counter() - started
            _swap_into_place(html, out_path)
            if directory is not None:
                _save_paper_cache(directory / PAPER_PAGES, paper_cache)
            return result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _cache_dir(kb: KnowledgeBase, cache_dir: Path | str | None) -> Path | None:
    """Where the page cache lives (None when it cannot be created: builds are then full)."""
    directory = Path(cache_dir) if cache_dir is not None else kb.root / ".cache" / "kbtool" / "site"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory


def _save_paper_cache(path: Path, cache: PaperPageCache) -> None:
    try:
        write_bytes_atomic(
            path,
            pydantic_core.to_json(
                {"pages": cache.new, "rows": cache.new_rows, "attrs": cache.new_attrs}
            ),
        )
    except OSError:
        return  # the next incremental build renders every paper page again


def _swap_into_place(new: Path, out: Path) -> None:
    """Rename the finished site to ``out``; an existing site is moved aside first, then removed."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(out, old)
        os.rename(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, out)
