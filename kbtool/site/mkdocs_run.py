"""Run ``mkdocs build --strict`` in this process, reusing the HTML of unchanged pages.

mkdocs has no incremental build (``--dirty`` leaves the search index and other pages wrong),
so this wraps its two per-page steps. A page whose inputs hash to the key of the previous
build (its markdown, which names each set-aside fragment by its hash; the files its snippet
lines include; the mkdocs configuration, the versions of mkdocs and the theme, and the list of
every page, which links resolve against) is not converted or themed again: its HTML and its
search-index entries are taken from the page cache, in the same order as a build would add
them, so the site is byte for byte the one a full build makes. The cache holds one file per
distinct page output, named by its content hash, and a state file naming each page's key,
output and search entries; both are written only after mkdocs succeeded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic_core

from kbtool.core.atomic import write_bytes_atomic

#: The pages a first build splits among worker processes (the many small ones).
CACHED_PREFIXES = ("papers/", "taxonomy/")
#: A snippet line of pymdownx.snippets: ``--8<-- "path:start:end"``.
_SNIPPET = re.compile(rb'^[ \t]*--8<-- "([^":]+)[^"]*"[ \t]*$', re.MULTILINE)
_FRAGMENT = re.compile(r'<div data-kb-fragment="([0-9a-f]+)"></div>')
STATE_FORMAT = "kbtool-site-pages/1"
#: Below this many paper and taxonomy pages a single process is quicker than forking.
PARALLEL_MIN_PAGES = 2000
#: Processes for a first or full build (None: one per core, at most 4).
WORKERS: int | None = None


class MkdocsFailedError(RuntimeError):
    """mkdocs refused the site (in strict mode any warning does); carries its log."""

    def __init__(self, log: str) -> None:
        super().__init__(log)
        self.log = log


@dataclass(frozen=True)
class PageRecord:
    """One cached page: the key of its inputs, its output's digest and size, its entries."""

    key: str
    html: str
    size: int
    entries: list[dict[str, Any]]


def _digest(*parts: bytes) -> str:
    hasher = hashlib.blake2b(digest_size=20)
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()


class PageCache:
    """The pages of the previous build under ``directory`` (None: no cache at all)."""

    def __init__(self, directory: Path | None, reuse: bool) -> None:
        self.directory = directory
        self.old: dict[str, PageRecord] = self._read() if reuse else {}
        self.new: dict[str, PageRecord] = {}

    def _read(self) -> dict[str, PageRecord]:
        if self.directory is None:
            return {}
        try:
            data = pydantic_core.from_json((self.directory / "state.json").read_bytes())
            if data.get("format") != STATE_FORMAT:
                return {}
            return {rel: PageRecord(*record) for rel, record in data["pages"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}

    def object_path(self, html: str) -> str:
        """Where the page output with digest ``html`` is kept."""
        assert self.directory is not None
        return f"{self.directory}/pages/{html}.html"

    def reusable(self, rel: str, key: str) -> PageRecord | None:
        """The cached page for ``rel`` when its key matches and its output is intact."""
        record = self.old.get(rel)
        if record is None or record.key != key:
            return None
        try:
            if os.stat(self.object_path(record.html)).st_size != record.size:
                return None
        except OSError:
            return None
        return record

    def store(self, rel: str, key: str, output: Path, entries: list[dict[str, Any]]) -> None:
        """Remember the page just built (its output is linked into the cache)."""
        if self.directory is None:
            return
        data = output.read_bytes()
        record = PageRecord(key, _digest(data), len(data), json.loads(json.dumps(entries)))
        target = Path(self.object_path(record.html))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(output, target)
        self.new[rel] = record

    def save(self) -> None:
        """Write the new state atomically, then drop page outputs nothing refers to."""
        if self.directory is None:
            return
        try:
            state = {
                "format": STATE_FORMAT,
                "pages": {rel: [r.key, r.html, r.size, r.entries] for rel, r in self.new.items()},
            }
            write_bytes_atomic(self.directory / "state.json", pydantic_core.to_json(state))
            kept = {f"{r.html}.html" for r in self.new.values()}
            for path in (self.directory / "pages").glob("*.html"):
                if path.name not in kept:
                    path.unlink(missing_ok=True)
        except OSError:
            return  # a cache that cannot be written only costs time next build


def _link_or_copy(source: Path | str, target: Path | str) -> None:
    """Hard-link ``target`` to ``source`` (outputs are never modified in place: every build
    writes a new site), or copy it where links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname:<8} -  {record.getMessage()}")


@contextmanager
def _captured_mkdocs_log() -> Iterator[_LogCollector]:
    logger = logging.getLogger("mkdocs")
    collector = _LogCollector()
    saved = (logger.level, logger.propagate)
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def run_mkdocs(
    config_path: Path,
    cache: PageCache,
    fragments: dict[str, str] | None = None,
    workers: int | None = None,
) -> str:
    """Build the site of ``config_path`` (strict), reusing ``cache``; returns mkdocs's log.
    Each ``<div data-kb-fragment="NAME"></div>`` of a finished page is replaced by
    ``fragments[NAME]`` (HTML set aside by the renderer).

    When the cache holds few of the pages (a first or full build), ``workers`` processes
    (default: one per core, at most 4) first build shares of the paper and taxonomy pages into
    the cache, each in a build of its own; the final build then only assembles them, so its
    output is the same as a single-process build's.

    Raises ``MkdocsFailedError`` with the log when mkdocs fails.
    """
    count = workers or WORKERS or min(os.cpu_count() or 1, 4)
    if count > 1 and cache.directory is not None and _mostly_cold(config_path, cache):
        _prebuild(config_path, cache, fragments or {}, count)
    return _run(config_path, cache, fragments or {}, share=None)


def _mostly_cold(config_path: Path, cache: PageCache) -> bool:
    """True when fewer than half the paper and taxonomy pages have a cache record."""
    import yaml

    docs = Path(yaml.safe_load(config_path.read_text(encoding="utf-8"))["docs_dir"])
    pages = sum(len(list((docs / p).glob("*.md"))) for p in CACHED_PREFIXES)
    return pages >= PARALLEL_MIN_PAGES and len(cache.old) * 2 < pages


def _prebuild(config_path: Path, cache: PageCache, fragments: dict[str, str], count: int) -> None:
    """Build the shares of the cacheable pages in ``count`` forked processes; their records
    join the cache's reusable pages (a share that fails is simply built by the final build)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    jobs = [(config_path, cache.directory, cache.old, fragments, (i, count)) for i in range(count)]
    with context.Pool(count) as pool:
        for records in pool.starmap(_build_share, jobs):
            cache.old = {**cache.old, **records}


def _build_share(
    config_path: Path,
    directory: Path,
    old: dict[str, PageRecord],
    fragments: dict[str, str],
    share: tuple[int, int],
) -> dict[str, PageRecord]:
    """Worker: build this share of the pages into the cache; their records (none on failure)."""
    cache = PageCache(directory, reuse=False)
    cache.old = old
    try:
        _run(config_path, cache, fragments, share=share)
    except MkdocsFailedError:
        return {}
    return cache.new


def _run(
    config_path: Path,
    cache: PageCache,
    fragments: dict[str, str],
    share: tuple[int, int] | None,
) -> str:
    """One mkdocs build with the page steps wrapped; a ``share`` build (index, count) builds
    only its share of the cacheable pages, into a site directory of its own, and saves
    nothing but page outputs."""
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    import tempfile

    import mkdocs
    from mkdocs.commands import build as mkbuild
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    with _captured_mkdocs_log() as collector, tempfile.TemporaryDirectory() as scratch:
        try:
            config = load_config(str(config_path))
            if share is not None:
                config["site_dir"] = scratch
            _keep_compiled_theme(config, cache.directory)
            search = config.plugins.get("material/search") or config.plugins.get("search")
            wrappers = _PageSteps(cache, search, config_path, mkdocs.__version__)
            wrappers.fragments = fragments
            wrappers.share = share
            populate = wrappers.populate(mkbuild._populate_page)
            build_page = wrappers.build(mkbuild._build_page)
            with (
                _patched(mkbuild, "_populate_page", populate),
                _patched(mkbuild, "_build_page", build_page),
            ):
                mkbuild.build(config)
        except (MkDocsException, OSError, ValueError, KeyError, TypeError) as exc:
            collector.lines.append(f"ERROR    -  {exc}")
            raise MkdocsFailedError("\n".join(collector.lines)) from exc
    if share is None:
        cache.save()
    return "\n".join(collector.lines)


def _keep_compiled_theme(config: Any, directory: Path | None) -> None:  # noqa: ANN401
    """Give the theme's jinja2 environment a cache of compiled templates beside the page
    cache (jinja checks each entry against the template's source)."""
    from kbtool.site.templating import bytecode_cache

    compiled = bytecode_cache(directory / "templates" if directory is not None else None)
    if compiled is None:
        return
    theme = config.theme
    make_env = theme.get_env

    def get_env() -> Any:  # noqa: ANN401 - a jinja2 Environment
        env = make_env()
        env.bytecode_cache = compiled
        return env

    theme.get_env = get_env


def _config_identity(config: Path) -> bytes:
    """The configuration as it bears on page output: without this build's temporary docs and
    site directories (pages link relatively, so where they are built does not matter)."""
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for key in ("docs_dir", "site_dir"):
        data.pop(key, None)
    # a hook's code bears on every page it sees
    hooks = [Path(config.parent, hook).read_bytes() for hook in data.get("hooks", [])]
    return json.dumps(data, sort_keys=True, default=str).encode() + b"".join(hooks)


@contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:  # noqa: ANN401
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class _PageSteps:
    """Wrappers of mkdocs's per-page steps that skip pages the cache can supply."""

    def __init__(self, cache: PageCache, search: Any, config: Path, version: str) -> None:  # noqa: ANN401
        self.cache = cache
        self.search = search  # the search plugin: its index exists once the build started
        self.config_text = _config_identity(config)
        self.version = version
        self.global_key: str | None = None
        self.skipped: dict[str, PageRecord] = {}
        self.pending: dict[str, str] = {}
        self.fragments: dict[str, str] = {}
        self.share: tuple[int, int] | None = None
        self.made: set[str] = set()

    def _make_parent(self, target: str) -> None:
        """Create the directory of ``target`` (once per directory: 10,000 pages share a few)."""
        parent = os.path.dirname(target)
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)

    def _elsewhere(self, rel: str) -> bool:
        """In a share build: True for pages another share (or the final build) makes."""
        if self.share is None:
            return False
        index, count = self.share
        mine = rel.startswith(CACHED_PREFIXES) and zlib.crc32(rel.encode()) % count == index
        return not mine

    def _insert_fragments(self, output: Path) -> None:
        """Put the set-aside HTML in place of its markers in a finished page."""
        text = output.read_bytes().decode("utf-8") if self.fragments else ""
        if _FRAGMENT.search(text) is None:
            return
        filled = _FRAGMENT.sub(lambda match: self.fragments[match.group(1)], text)
        output.write_bytes(filled.encode("utf-8", errors="xmlcharrefreplace"))

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The search index's entries so far (a build without search has none)."""
        if self.search is None:
            return []
        entries: list[dict[str, Any]] = self.search.search_index.entries
        return entries

    def _key(self, rel: str, source: bytes, files: Any) -> str:  # noqa: ANN401
        if self.global_key is None:
            from importlib import metadata

            pages = "\n".join(sorted(f.src_uri for f in files.documentation_pages()))
            theme = metadata.version("mkdocs-material")
            self.global_key = _digest(
                self.config_text, self.version.encode(), theme.encode(), pages.encode()
            )
        return _digest(self.global_key.encode(), rel.encode(), source)

    @staticmethod
    def _included(source: bytes, config: Any) -> bytes | None:  # noqa: ANN401
        """What the page's snippet lines include: each named file's bytes (b"" when the page
        has none); None when it uses a snippet form this does not read (never cached)."""
        if b"--8<--" not in source:
            return b""
        names = _SNIPPET.findall(source)
        if len(names) != source.count(b"--8<--"):
            return None
        options = config["mdx_configs"].get("pymdownx.snippets", {})
        bases = [Path(base) for base in options.get("base_path", ["."])]
        return snippet_inputs([name.decode() for name in names], bases)

    def _page_key(self, rel: str, page: Any, config: Any, files: Any) -> str | None:  # noqa: ANN401
        """The page's cache key, or None when it is not cached (no cache, or an unread
        snippet form)."""
        if self.cache.directory is None:
            return None
        source = Path(page.file.abs_src_path).read_bytes()
        included = self._included(source, config)
        return None if included is None else self._key(rel, source + included, files)

    def populate(self, original: Callable[..., None]) -> Callable[..., None]:
        def populate(page: Any, config: Any, files: Any, dirty: bool = False) -> None:  # noqa: ANN401
            rel = page.file.src_uri
            if self._elsewhere(rel):
                return
            key = self._page_key(rel, page, config, files)
            if key is not None:
                record = self.cache.reusable(rel, key)
                if record is not None:
                    self.skipped[rel] = record
                    return
                self.pending[rel] = key
            original(page, config, files, dirty)

        return populate

    def build(self, original: Callable[..., None]) -> Callable[..., None]:
        def build(
            page: Any,
            config: Any,
            doc_files: Any,
            nav: Any,
            env: Any,
            dirty: bool = False,
            excluded: bool = False,
        ) -> None:  # noqa: ANN401, E501
            rel = page.file.src_uri
            if self._elsewhere(rel) or (self.share is not None and rel in self.skipped):
                return
            record = self.skipped.get(rel)
            if record is not None:
                target = page.file.abs_dest_path
                self._make_parent(target)
                _link_or_copy(self.cache.object_path(record.html), target)
                self.entries.extend(dict(entry) for entry in record.entries)
                self.cache.new[rel] = record
                return
            start = len(self.entries)
            original(page, config, doc_files, nav, env, dirty, excluded=excluded)
            self._insert_fragments(Path(page.file.abs_dest_path))
            if rel in self.pending:
                added = self.entries[start:]
                self.cache.store(rel, self.pending[rel], Path(page.file.abs_dest_path), added)

        return build


def snippet_inputs(names: list[str], bases: list[Path]) -> bytes:
    """A digest of each snippet file with its name, the file found as pymdownx.snippets
    finds it (the first base path that has it); a file found nowhere counts as missing."""
    parts = []
    for name in names:
        found = next((base / name for base in bases if (base / name).is_file()), None)
        data = found.read_bytes() if found is not None else b"<missing>"
        parts.append(_digest(name.encode(), data).encode())
    return b"\n--snippets--\n" + b"\n".join(parts)
