"""Read and validate the paper files, reusing the load cache for files whose content is unchanged.

A file is unchanged when its stat signature (size, times, inode) is the one recorded with its
cache entry, or else when its content hash is the entry's. Changed files are parsed and
validated (by worker processes for large sets); every result is the same as a cold load's.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from kbtool.core.errors import Problem
from kbtool.core.load_cache import (
    CacheFile,
    Entry,
    Signature,
    content_digest,
    read_cache,
    write_cache,
)
from kbtool.core.model import Paper
from kbtool.core.paths import PAPERS_DIR
from kbtool.core.safe_yaml import YamlError, parse_yaml_bytes, read_file_bytes
from kbtool.core.validation import context, validate

PARALLEL_THRESHOLD = 2000
#: Files a worker process checks per task.
CHUNK = 200
#: A file changed less than this long before its signature was taken could change again
#: within the file system's timestamp granularity unseen, so its signature is not kept.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class PaperOutcome:
    """What checking one paper file gave: its cache entry (None when it has a problem or
    could not be read) and the problems found."""

    entry: Entry | None
    problems: list[Problem]


def _signature(stat: os.stat_result, now_ns: int) -> Signature | None:
    """The stat signature of a file, or None when it changed too recently to be trusted."""
    if now_ns - max(stat.st_mtime_ns, stat.st_ctime_ns) < RACY_NS:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def check_paper(job: tuple[Path, str]) -> PaperOutcome:
    """Worker: read, parse and validate one paper file; the model comes back as JSON."""
    path, rel = job
    try:
        stat = os.stat(path)  # before reading: a later change shows as a new signature
        raw = read_file_bytes(path)
    except (YamlError, OSError) as exc:
        message = str(exc) if isinstance(exc, YamlError) else f"cannot read file: {exc.strerror}"
        return PaperOutcome(None, [Problem(rel, "(file)", message)])
    try:
        data = parse_yaml_bytes(raw)
    except YamlError as exc:
        return PaperOutcome(None, [Problem(rel, "(file)", str(exc))])
    paper, problems = validate(Paper, data, rel)
    if paper is None:
        return PaperOutcome(None, problems)
    # exclude_unset: the JSON holds exactly the fields the file set, so a model read back
    # from the cache is the model a cold load builds (fields set included).
    body = paper.model_dump_json(exclude_unset=True).encode()
    signature = _signature(stat, time.time_ns())
    return PaperOutcome(Entry(content_digest(raw), body, signature), problems)


def _check_all(jobs: list[tuple[Path, str]]) -> list[PaperOutcome]:
    """Check many files; YAML construction is CPU-bound, so large sets use every core."""
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
        return [check_paper(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    mp_context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp_context) as pool:
        # Small chunks: a worker that runs out of work early waits for at most one chunk.
        return list(pool.map(check_paper, jobs, chunksize=CHUNK))


def _still_valid(path: str, entry: Entry, now_ns: int) -> Entry | None:
    """``entry`` (with a fresh signature if need be) when ``path`` still has the content it
    was made from, else None."""
    try:
        stat = os.stat(path)
        if entry.signature is not None and _signature(stat, now_ns) == entry.signature:
            return entry
        with open(path, "rb") as handle:
            if content_digest(handle.read()) != entry.digest:
                return None
    except OSError:
        return None
    return Entry(entry.digest, entry.body, _signature(stat, now_ns))


def paper_files(directory: Path) -> tuple[list[str], list[str]]:
    """The names of the ``*.yaml`` files of ``directory`` and of its ``*.yml`` files (which
    the loader reports), each in order; names, not paths: a load handles 10,000 of them."""
    if not directory.is_dir():
        return [], []
    names = os.listdir(directory)
    return sorted(n for n in names if n.endswith(".yaml")), sorted(
        n for n in names if n.endswith(".yml")
    )


@dataclass
class CheckedPapers:
    """What checking the paper files gave, one slot per file in name order: the cache entry
    of each valid file (None for a file with a problem), the problems by slot, how many files
    came from the cache unchanged, whether the cache needs writing again, and the cache's
    digest of consistent inputs (see ``load_cache.CacheFile``)."""

    entries: list[Entry | None]
    problems: dict[int, list[Problem]]
    hits: int
    stale: bool
    consistent: str | None


def check_papers(
    root: Path, names: list[str], use_cache: bool, reuse: bool = True
) -> CheckedPapers:
    """Check the files ``names`` of ``root/papers``: a file whose content is unchanged is
    taken from the cache (when ``use_cache`` and ``reuse``), others are parsed and
    validated. ``save_cache`` writes the result."""
    prefix = f"{PAPERS_DIR.as_posix()}/"
    directory = os.path.join(root, PAPERS_DIR)
    cache = read_cache(root) if use_cache and reuse else CacheFile({})
    cached = cache.entries
    now_ns = time.time_ns()
    entries: list[Entry | None] = []
    misses: list[int] = []
    refreshed = False
    for i, name in enumerate(names):
        entry = cached.get(prefix + name)
        valid = _still_valid(f"{directory}/{name}", entry, now_ns) if entry else None
        if valid is None:
            misses.append(i)
        refreshed |= valid is not entry
        entries.append(valid)
    problems: dict[int, list[Problem]] = {}
    jobs = [(Path(directory, names[i]), prefix + names[i]) for i in misses]
    for i, outcome in zip(misses, _check_all(jobs), strict=True):
        entries[i] = outcome.entry
        if outcome.problems:
            problems[i] = outcome.problems
    # every name a hit and as many entries as names: the cached set is exactly this one
    stale = bool(misses or refreshed or len(cached) != len(names))
    return CheckedPapers(entries, problems, len(names) - len(misses), stale, cache.consistent)


def save_cache(
    root: Path, names: list[str], checked: CheckedPapers, consistent: str | None
) -> None:
    """Write the cache of the files ``names`` that ``checked`` found valid, with
    ``consistent``, unless the cache already holds exactly that."""
    if not checked.stale and consistent == checked.consistent:
        return
    prefix = f"{PAPERS_DIR.as_posix()}/"
    fresh = {
        prefix + name: entry
        for i, (name, entry) in enumerate(zip(names, checked.entries, strict=True))
        if entry is not None and i not in checked.problems
    }
    write_cache(root, fresh, consistent)


def models_of(bodies: list[bytes]) -> list[Paper]:
    """The papers of JSON bodies, validated again by pydantic (from JSON, in Rust: faster
    than rebuilding them in Python, and a cache can never yield a model the schema refuses);
    ValueError when a body does not validate."""
    array = b"[" + b",".join(bodies) + b"]"
    try:
        return _paper_list().validate_json(array, context=context())
    except ValidationError as exc:
        raise ValueError(str(exc)) from exc


@functools.cache
def _paper_list() -> TypeAdapter[list[Paper]]:
    return TypeAdapter(list[Paper])
