"""Load the knowledge base from YAML and validate it: schema, ids, references, uniqueness.

``load_records`` never raises for bad data: it returns what it could read plus a list of
``Problem`` (file, field, message), so ``kbtool validate`` can report everything at once.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from kbtool.core.errors import KnowledgeBaseError, Problem, validation_message
from kbtool.core.load_cache import Entry, content_digest, read_cache, write_cache
from kbtool.core.model import (
    VOCABULARY_CONTEXT,
    Method,
    MethodFile,
    Paper,
    Taxonomy,
    TaxonomyNode,
)
from kbtool.core.paths import METHODS_DIR, NODES_FILE, PAPERS_DIR, default_root
from kbtool.core.safe_yaml import YamlError, parse_yaml_bytes, read_file_bytes, read_yaml
from kbtool.core.taxonomy import TaxonomyUnavailableError, Vocabulary, bundled_vocabulary

M = TypeVar("M", bound=BaseModel)


@dataclass
class Records:
    """The validated records of a knowledge base, in file order, and the problems found."""

    root: Path
    nodes: list[TaxonomyNode] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]" if parts else f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(file)"


def _validate(
    model: type[M], data: Any, rel: str, prefix: str = ""
) -> tuple[M | None, list[Problem]]:  # noqa: ANN401
    try:
        return model.model_validate(data, context=_context()), []
    except ValidationError as exc:
        problems = [
            Problem(rel, _field_path(tuple(err["loc"]), prefix), validation_message(err))
            for err in exc.errors(include_url=False)
        ]
        return None, problems


def _read(path: Path, rel: str, problems: list[Problem]) -> Any | None:  # noqa: ANN401
    try:
        return read_yaml(path)
    except YamlError as exc:
        problems.append(Problem(rel, "(file)", str(exc)))
        return None


def _load_nodes(root: Path, records: Records) -> None:
    rel = NODES_FILE.as_posix()
    path = root / NODES_FILE
    if not path.is_file():
        records.problems.append(Problem(rel, "(file)", "taxonomy file is missing"))
        return
    data = _read(path, rel, records.problems)
    if data is None:
        return
    taxonomy, problems = _validate(Taxonomy, data, rel)
    records.problems.extend(problems)
    if taxonomy is not None:
        records.nodes.extend(taxonomy.nodes)


def _load_methods(root: Path, records: Records) -> dict[str, str]:
    """Read every methods file; return method id -> file it came from."""
    origin: dict[str, str] = {}
    directory = root / METHODS_DIR
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        data = _read(path, rel, records.problems)
        if data is None:
            continue
        methods, problems = _validate(MethodFile, data, rel)
        records.problems.extend(problems)
        for method in methods.methods if methods else []:
            if method.id in origin:
                records.problems.append(
                    Problem(
                        rel,
                        f"methods.{method.id}.id",
                        f"duplicate method id (also in {origin[method.id]})",
                    )
                )
                continue
            origin[method.id] = rel
            records.methods.append(method)
    return origin


PARALLEL_THRESHOLD = 2000


@dataclass(frozen=True)
class _PaperOutcome:
    """What checking one paper file gave: its digest, its model as JSON (None when it has a
    problem) and the problems found."""

    digest: str | None
    body: bytes | None
    problems: list[Problem]


def _check_paper(job: tuple[Path, str]) -> _PaperOutcome:
    """Worker: read, parse and validate one paper file; the model comes back as JSON."""
    path, rel = job
    try:
        raw = read_file_bytes(path)
    except YamlError as exc:
        return _PaperOutcome(None, None, [Problem(rel, "(file)", str(exc))])
    digest = content_digest(raw)
    try:
        data = parse_yaml_bytes(raw)
    except YamlError as exc:
        return _PaperOutcome(digest, None, [Problem(rel, "(file)", str(exc))])
    paper, problems = _validate(Paper, data, rel)
    if paper is None:
        return _PaperOutcome(digest, None, problems)
    # exclude_unset: the JSON holds exactly the fields the file set, so a model read back
    # from the cache is the model a cold load builds (fields set included).
    return _PaperOutcome(digest, paper.model_dump_json(exclude_unset=True).encode(), problems)


def _check_all(jobs: list[tuple[Path, str]]) -> list[_PaperOutcome]:
    """Check many files; YAML construction is CPU-bound, so large sets use every core."""
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
        return [_check_paper(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_check_paper, jobs, chunksize=max(1, len(jobs) // (workers * 4))))


def _cache_hit(path: Path, entry: Entry) -> bool:
    """True when ``path`` still has the content its cache entry was made from."""
    try:
        return content_digest(path.read_bytes()) == entry.digest
    except OSError:
        return False


def _outcomes(
    root: Path, paths: list[Path], use_cache: bool, reuse: bool
) -> tuple[list[_PaperOutcome], int]:
    """One outcome per paper file, and how many came from the cache: a file whose content is
    unchanged is taken from the cache (when ``reuse``), others are checked; the cache is
    rewritten when anything changed (when ``use_cache``)."""
    rels = [f"{PAPERS_DIR.as_posix()}/{path.name}" for path in paths]
    cached = read_cache(root) if use_cache and reuse else {}
    outcomes: list[_PaperOutcome | None] = [None] * len(paths)
    misses: list[int] = []
    for i, (path, rel) in enumerate(zip(paths, rels, strict=True)):
        entry = cached.get(rel)
        if entry is not None and _cache_hit(path, entry):
            outcomes[i] = _PaperOutcome(entry.digest, entry.body, [])
        else:
            misses.append(i)
    for i, outcome in zip(misses, _check_all([(paths[i], rels[i]) for i in misses]), strict=True):
        outcomes[i] = outcome
    done = [o for o in outcomes if o is not None]
    if use_cache and (misses or set(cached) != set(rels)):
        write_cache(
            root,
            {
                rel: Entry(o.digest, o.body)
                for rel, o in zip(rels, done, strict=True)
                if o.digest is not None and o.body is not None and not o.problems
            },
        )
    return done, len(paths) - len(misses)


def _paper_files(directory: Path) -> list[Path]:
    """The ``*.yaml`` files of ``directory`` in name order (names compared as strings, as
    sorted paths of one directory are, only faster)."""
    if not directory.is_dir():
        return []
    names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".yaml"))
    return [directory / name for name in names]


def _load_papers(root: Path, records: Records, use_cache: bool, reuse: bool = True) -> None:
    directory = root / PAPERS_DIR
    paths = _paper_files(directory)
    for stray in sorted(directory.glob("*.yml")) if directory.is_dir() else []:
        records.problems.append(
            Problem(
                stray.relative_to(root).as_posix(),
                "(file)",
                "paper files must end in .yaml (this one would be ignored); rename it",
            )
        )
    outcomes, hits = _outcomes(root, paths, use_cache, reuse)
    bodies = [o.body for o in outcomes if o.body is not None]
    try:
        array = b"[" + b",".join(bodies) + b"]"
        papers = iter(_paper_list().validate_json(array, context=_context()))
    except ValidationError:
        if not hits:
            raise  # a model that does not survive its own JSON: a bug, not bad data
        _load_papers(root, records, use_cache, reuse=False)  # a cache pydantic refuses
        return
    for path, outcome in zip(paths, outcomes, strict=True):
        records.problems.extend(outcome.problems)
        if outcome.body is None:
            continue
        paper = next(papers)
        if paper.id != path.stem:
            rel = f"{PAPERS_DIR.as_posix()}/{path.name}"
            records.problems.append(
                Problem(rel, "id", f"id {paper.id!r} does not match the file name {path.stem!r}")
            )
            continue
        records.papers.append(paper)


def _context() -> dict[str, Vocabulary] | None:
    """The validation context: the bundled vocabulary, read once rather than per paper (None
    when it cannot be read, so that each paper using it reports why)."""
    try:
        return {VOCABULARY_CONTEXT: bundled_vocabulary()}
    except TaxonomyUnavailableError:
        return None


@functools.cache
def _paper_list() -> TypeAdapter[list[Paper]]:
    return TypeAdapter(list[Paper])


def check_references(records: Records, method_origin: dict[str, str]) -> None:
    """Cross-file checks: known ids, parents, methods and papers; unique ids and arXiv ids."""
    problems = records.problems
    node_ids = {n.id for n in records.nodes}
    method_ids = {m.id for m in records.methods}
    paper_ids = {p.id for p in records.papers}

    seen_nodes: set[str] = set()
    for node in records.nodes:
        rel = NODES_FILE.as_posix()
        if node.id in seen_nodes:
            problems.append(Problem(rel, f"nodes.{node.id}.id", "duplicate node id"))
        seen_nodes.add(node.id)
        if node.parent is not None and node.parent not in node_ids:
            problems.append(
                Problem(rel, f"nodes.{node.id}.parent", f"unknown node {node.parent!r}")
            )
    _check_acyclic(records.nodes, problems)

    for method in records.methods:
        rel = method_origin.get(method.id, METHODS_DIR.as_posix())
        where = f"methods.{method.id}"
        for node_id in method.nodes:
            if node_id not in node_ids:
                problems.append(Problem(rel, f"{where}.nodes", f"unknown node {node_id!r}"))
        for paper_id in method.papers:
            if paper_id not in paper_ids:
                problems.append(Problem(rel, f"{where}.papers", f"unknown paper {paper_id!r}"))
        for reduction in method.generalizes:
            if reduction.method not in method_ids:
                problems.append(
                    Problem(rel, f"{where}.generalizes", f"unknown method {reduction.method!r}")
                )

    arxiv_owner: dict[str, list[str]] = defaultdict(list)
    papers_dir = PAPERS_DIR.as_posix()
    for paper in records.papers:
        rel = f"{papers_dir}/{paper.id}.yaml"
        for node_id in paper.nodes:
            if node_id not in node_ids:
                problems.append(Problem(rel, "nodes", f"unknown node {node_id!r}"))
        placed = {p.node for p in paper.placements}
        unplaced = [n for n in paper.nodes if n not in placed]
        if unplaced:
            problems.append(
                Problem(rel, "placements", f"no recorded basis for node(s) {', '.join(unplaced)}")
            )
        for method_id in paper.methods:
            if method_id not in method_ids:
                problems.append(Problem(rel, "methods", f"unknown method {method_id!r}"))
        for name, values in (
            ("nodes", paper.nodes),
            ("methods", paper.methods),
            ("code", paper.code),
        ):
            if len(set(values)) != len(values):
                problems.append(Problem(rel, name, "contains duplicates"))
        if paper.arxiv_id:
            arxiv_owner[paper.arxiv_id].append(paper.id)
    for arxiv_id, owners in arxiv_owner.items():
        if len(owners) > 1:
            for owner in owners:
                others = ", ".join(o for o in owners if o != owner)
                problems.append(
                    Problem(
                        (PAPERS_DIR / f"{owner}.yaml").as_posix(),
                        "arxiv_id",
                        f"arXiv id {arxiv_id} is also used by {others}",
                    )
                )


def _check_acyclic(nodes: list[TaxonomyNode], problems: list[Problem]) -> None:
    parent = {n.id: n.parent for n in nodes}
    for start in parent:
        seen = {start}
        current = parent[start]
        while current is not None and current in parent:
            if current in seen:
                problems.append(
                    Problem(NODES_FILE.as_posix(), f"nodes.{start}.parent", "cycle in the taxonomy")
                )
                break
            seen.add(current)
            current = parent[current]


def load_records(root: Path | str | None = None, *, cache: bool = True) -> Records:
    """Read and validate every file under ``root``; never raises for bad data.

    ``cache``: reuse (and refresh) the validated load cache under ``root/.cache/`` for paper
    files whose content is unchanged; the result is the same either way.
    """
    base = Path(root) if root is not None else default_root()
    records = Records(root=base)
    if not base.is_dir():
        records.problems.append(
            Problem(str(base), "(root)", "knowledge base directory does not exist")
        )
        return records
    _load_nodes(base, records)
    origin = _load_methods(base, records)
    _load_papers(base, records, cache)
    check_references(records, origin)
    return records


def load_for_import(root: Path) -> Records:
    """Records for an importer: any problem is fatal except method nodes pointing at papers
    that do not exist yet (the import may be what creates them)."""
    records = load_records(root)
    fatal = [
        p
        for p in records.problems
        if not (p.file.startswith(METHODS_DIR.as_posix()) and p.message.startswith("unknown paper"))
    ]
    if fatal:
        raise KnowledgeBaseError(fatal)
    return records
