"""Load the knowledge base from YAML and validate it: schema, ids, references, uniqueness.

``load_records`` never raises for bad data: it returns what it could read plus a list of
``Problem`` (file, field, message), so ``kbtool validate`` can report everything at once.
Paper files come through ``paper_files``, which reuses the validated load cache for files
whose content is unchanged.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.core.errors import KnowledgeBaseError, Problem
from kbtool.core.gc_pause import collection_paused
from kbtool.core.load_cache import content_digest
from kbtool.core.model import Method, MethodFile, Paper, Taxonomy, TaxonomyNode
from kbtool.core.paper_files import (
    CheckedPapers,
    check_papers,
    models_of,
    paper_files,
    save_cache,
)
from kbtool.core.paths import METHODS_DIR, NODES_FILE, PAPERS_DIR, default_root
from kbtool.core.safe_yaml import YamlError, parse_yaml_bytes, read_file_bytes
from kbtool.core.validation import validate


@dataclass
class Records:
    """The validated records of a knowledge base, in file order, and the problems found."""

    root: Path
    nodes: list[TaxonomyNode] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: The content digest of each taxonomy and methods file, of the very bytes parsed.
    file_digests: dict[str, str] = field(default_factory=dict)


def _read(path: Path, rel: str, records: Records) -> Any | None:  # noqa: ANN401
    try:
        raw = read_file_bytes(path)
        records.file_digests[rel] = content_digest(raw)
        return parse_yaml_bytes(raw)
    except YamlError as exc:
        records.problems.append(Problem(rel, "(file)", str(exc)))
        return None


def _load_nodes(root: Path, records: Records) -> None:
    rel = NODES_FILE.as_posix()
    path = root / NODES_FILE
    if not path.is_file():
        records.problems.append(Problem(rel, "(file)", "taxonomy file is missing"))
        return
    data = _read(path, rel, records)
    if data is None:
        return
    taxonomy, problems = validate(Taxonomy, data, rel)
    records.problems.extend(problems)
    if taxonomy is not None:
        records.nodes.extend(taxonomy.nodes)


def _load_methods(root: Path, records: Records) -> dict[str, str]:
    """Read every methods file; return method id -> file it came from."""
    origin: dict[str, str] = {}
    directory = root / METHODS_DIR
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        data = _read(path, rel, records)
        if data is None:
            continue
        methods, problems = validate(MethodFile, data, rel)
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


def _load_papers(
    root: Path, records: Records, use_cache: bool, reuse: bool = True
) -> tuple[list[str], CheckedPapers]:
    """Read the paper files into ``records``; returns their names and what checking gave."""
    directory = root / PAPERS_DIR
    names, strays = paper_files(directory)
    checked = check_papers(root, names, use_cache, reuse)
    try:
        papers = iter(models_of([e.body for e in checked.entries if e is not None]))
    except ValueError:
        if not checked.hits:
            raise  # a model that does not survive its own JSON: a bug, not bad data
        return _load_papers(root, records, use_cache, reuse=False)  # a cache that does not fit
    for stray in strays:
        records.problems.append(
            Problem(
                f"{PAPERS_DIR.as_posix()}/{stray}",
                "(file)",
                "paper files must end in .yaml (this one would be ignored); rename it",
            )
        )
    for i, (name, entry) in enumerate(zip(names, checked.entries, strict=True)):
        if i in checked.problems:
            records.problems.extend(checked.problems[i])
        if entry is None:
            continue
        paper = next(papers)
        stem = name.removesuffix(".yaml")
        if paper.id != stem:
            rel = f"{PAPERS_DIR.as_posix()}/{name}"
            records.problems.append(
                Problem(rel, "id", f"id {paper.id!r} does not match the file name {stem!r}")
            )
            continue
        records.papers.append(paper)
    return names, checked


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
    for paper in records.papers:
        _check_paper_references(paper, node_ids, method_ids, problems)
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


def _check_paper_references(
    paper: Paper, node_ids: set[str], method_ids: set[str], problems: list[Problem]
) -> None:
    """A paper's nodes and methods exist, each node has a placement, and its nodes, methods
    and code links have no duplicates. A valid paper costs a few set operations: the knowledge
    base is checked on every load."""
    nodes, methods = paper.nodes, paper.methods
    found: list[tuple[str, str]] = []
    if not node_ids.issuperset(nodes):
        found += [("nodes", f"unknown node {n!r}") for n in nodes if n not in node_ids]
    if nodes and not paper.placements:
        # a paper with placements has exactly one per node: the model checks that
        found.append(("placements", f"no recorded basis for node(s) {', '.join(nodes)}"))
    if not method_ids.issuperset(methods):
        found += [("methods", f"unknown method {m!r}") for m in methods if m not in method_ids]
    for name, values in (("nodes", nodes), ("methods", methods), ("code", paper.code)):
        if len(values) > 1 and len(set(values)) != len(values):
            found.append((name, "contains duplicates"))
    if found:
        rel = f"{PAPERS_DIR.as_posix()}/{paper.id}.yaml"
        problems.extend(Problem(rel, field, message) for field, message in found)


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
    with collection_paused():
        _load_nodes(base, records)
        origin = _load_methods(base, records)
        names, checked = _load_papers(base, records, cache)
        inputs = _inputs_digest(records, names, checked) if cache else None
        # Inputs a previous load found consistent need no cross-file checks again.
        if records.problems or inputs is None or inputs != checked.consistent:
            check_references(records, origin)
        if cache:
            save_cache(base, names, checked, None if records.problems else inputs)
    return records


def _inputs_digest(records: Records, names: list[str], checked: CheckedPapers) -> str:
    """A digest of everything the cross-file checks depend on: this module's code, the
    taxonomy and methods files and the paper files, each by name and the digest of the bytes
    this load parsed (the cache key covers the model and the vocabulary)."""
    hasher = hashlib.sha256(Path(__file__).read_bytes())
    hasher.update(
        "\0".join(f"{rel}\0{digest}" for rel, digest in records.file_digests.items()).encode()
    )
    hasher.update(b"\0\0" + "\0".join(names).encode() + b"\0\0")
    hasher.update("\0".join(e.digest if e else "" for e in checked.entries).encode())
    return hasher.hexdigest()


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
