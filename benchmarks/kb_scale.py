"""Scale benchmark: load a 10,000-paper knowledge base cold, warm and after one edit, and time
queries; each figure next to its target and the floor measured in the same run.

Usage: python benchmarks/kb_scale.py [--papers 10000] [--queries 50] [--kind real-size]

``--kind real-size`` (the default) clones the real paper files, provenance blocks included,
until there are ``--papers`` of them; ``synthetic`` writes small random papers. The floor of a
cold load is parsing every file with PyYAML's C loader alone, single-threaded. Targets on the
2-core reference machine: cold load no slower than that floor, warm load (unchanged knowledge
base, load cache under ``.cache/``) < 0.5 s, load after editing one file < 1 s, query p95
< 5 ms for every filter combination. Figures are medians of 3; prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import load_records
from kbtool.core.model import Basis, Paper, Placement
from kbtool.core.taxonomy import ELICITATION_NODES, OBJECTIVE_NODES
from kbtool.ingest.paper_io import paper_to_data, write_paper

REPO = Path(__file__).resolve().parent.parent
VENUES = ["arXiv", "ACL", "EMNLP", "ICLR", "NeurIPS", "Findings of EMNLP", "ICML"]
TEACHERS = ["GPT4", "ChatGPT", "LLaMA", "PaLM", "GPT3"]
WARM_TARGET_S = 0.5
ONE_EDIT_TARGET_S = 1.0
QUERY_TARGET_MS = 5.0
REPEATS = 3


def make_kb(root: Path, n: int, seed: int = 0) -> None:
    """Copy the real taxonomy and methods; write ``n`` random but valid papers."""
    rng = random.Random(seed)
    shutil.copytree(REPO / "taxonomy", root / "taxonomy")
    (root / "papers").mkdir(exist_ok=True)
    records = load_records(REPO, cache=False)
    leaves = [nd.id for nd in records.nodes if nd.parent is not None]
    methods = [m.id for m in records.methods]
    # The methods point at real papers: keep those so the synthetic KB validates.
    kept = {pid for m in records.methods for pid in m.papers}
    real_ids = {p.arxiv_id for p in records.papers if p.id in kept}
    for paper in records.papers:
        if paper.id in kept:
            write_paper(root, paper)
    for i in range(n):
        year = rng.randint(2016, 2025)
        month = rng.randint(1, 12)
        nodes = rng.sample(leaves, rng.randint(1, 3))
        _write_fast(
            root,
            Paper(
                id=f"synthetic{i:05d}",
                title=f"Synthetic paper {i} on distillation of {rng.choice(TEACHERS)}",
                authors=[f"Author {rng.randint(0, 999)}", f"Author {rng.randint(0, 999)}"],
                year=year,
                month=month,
                venue=rng.choice(VENUES),
                arxiv_id=_synthetic_arxiv_id(year, month, i, real_ids),
                url=f"https://example.org/paper/{i}",
                code=[f"https://github.com/example/repo{i}"] if rng.random() < 0.4 else [],
                nodes=nodes,
                placements=[Placement(node=node, basis=Basis.REVIEWED) for node in nodes],
                methods=rng.sample(methods, rng.randint(0, 2)),
                teachers=rng.sample(TEACHERS, 1),
                students=["LLaMA"],
                elicitation=rng.sample(list(ELICITATION_NODES), 1),
                objectives=rng.sample(list(OBJECTIVE_NODES), 1),
            ),
        )


def _synthetic_arxiv_id(year: int, month: int, i: int, taken: set[str | None]) -> str:
    """An arXiv id of the paper's own month (so first versions spread over the real years),
    unique among the synthetic papers by ``i`` and never one of the real papers' ids."""
    number = i % 100_000
    while (candidate := f"{year % 100:02d}{month:02d}.{number:05d}") in taken:
        number = (number + 50_000) % 100_000
    return candidate


def _write_fast(root: Path, paper: Paper) -> None:
    """Write a paper with libyaml's C dumper (the generator is not what is measured)."""
    text = yaml.dump(paper_to_data(paper), Dumper=yaml.CSafeDumper, sort_keys=False)
    (root / "papers" / f"{paper.id}.yaml").write_text(text, encoding="utf-8")


def make_real_size_kb(root: Path, n: int) -> None:
    """The real taxonomy and papers, plus clones of the real paper files (provenance blocks
    and all, only the id and arXiv id changed) until there are ``n`` papers."""
    shutil.copytree(REPO / "taxonomy", root / "taxonomy")
    (root / "papers").mkdir()
    originals = sorted((REPO / "papers").glob("*.yaml"))
    for path in originals:
        shutil.copy(path, root / "papers" / path.name)
    for i in range(max(0, n - len(originals))):
        text = originals[i % len(originals)].read_text(encoding="utf-8")
        clone = f"clone{i:05d}"
        text = re.sub(r"(?m)^id: .*$", f"id: {clone}", text, count=1)
        text = re.sub(
            r"(?m)^arxiv_id: .*$", f"arxiv_id: '99{i % 12 + 1:02d}.{i:05d}'", text, count=1
        )
        (root / "papers" / f"{clone}.yaml").write_text(text, encoding="utf-8")


def parse_floor(root: Path) -> float:
    """Seconds to parse every file of ``root`` with PyYAML's C loader, single-threaded."""
    started = time.perf_counter()
    for path in [root / "taxonomy" / "nodes.yaml", *sorted((root / "papers").glob("*.yaml"))]:
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)  # noqa: S506 - safe loader
    return time.perf_counter() - started


def median_of(
    runs: int, setup: Callable[[int], None], step: Callable[[], object]
) -> tuple[float, float]:
    """Median wall and CPU seconds (this process) of ``step`` over ``runs`` runs, each after
    ``setup(run)`` (not timed). CPU time shows the work when other jobs share the cores."""
    walls, cpus = [], []
    for run in range(runs):
        setup(run)
        started, cpu = time.perf_counter(), time.process_time()
        result = step()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        del result  # freeing what the step built is not part of the step
    return statistics.median(walls), statistics.median(cpus)


def time_loads(root: Path) -> None:
    """Cold, warm and one-edit loads (``kbtool.load``, the whole ``KnowledgeBase``), beside the
    floor."""
    cache = root / ".cache"
    # Floor and cold load alternate, so that both see the machine in the same state (a shared
    # machine drifts, and its page cache may drop the files between runs).
    floors, colds = [], []
    for _ in range(REPEATS):
        floors.append(parse_floor(root))
        colds.append(median_of(1, lambda _: shutil.rmtree(cache, ignore_errors=True), _load(root)))
    floor = statistics.median(floors)
    cold = statistics.median(c[0] for c in colds), statistics.median(c[1] for c in colds)
    kbtool.load(root)  # fill the cache
    warm = median_of(REPEATS, lambda _: None, _load(root))
    papers = sorted((root / "papers").glob("*.yaml"))

    def edit(run: int) -> None:
        path = papers[(run + 1) * len(papers) // (REPEATS + 2)]
        data = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)  # noqa: S506 - safe loader
        data["title"] = f"Edited ({run}): {data['title']}"
        path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))

    one_edit = median_of(REPEATS, edit, _load(root))
    print(f"PyYAML C-loader parse floor (single-threaded): {floor:.2f} s")
    print(
        f"cold load + validate: {cold[0]:.2f} s = {cold[0] / floor:.2f} x the parse floor "
        "(target <= 1.00 x)"
    )
    print(
        f"warm load (cache, unchanged): {warm[0]:.3f} s, CPU {warm[1]:.3f} s "
        f"= {warm[0] / floor:.3f} x the floor (target < {WARM_TARGET_S} s)"
    )
    print(
        f"load after editing one file: {one_edit[0]:.3f} s, CPU {one_edit[1]:.3f} s "
        f"= {one_edit[0] / floor:.3f} x the floor (target < {ONE_EDIT_TARGET_S} s)"
    )


def _load(root: Path) -> Callable[[], object]:
    def step() -> object:
        return kbtool.load(root)

    return step


def query_mix(kb: KnowledgeBase) -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """The filter combinations timed, by name: one random instance per call. Every value is
    drawn at random, so that most queries are not ones the indexes remember from before."""
    nodes = list(kb.nodes)
    methods = list(kb.methods)
    objectives, elicitations = sorted(OBJECTIVE_NODES), sorted(ELICITATION_NODES)
    words = sorted({w for p in kb.papers.values() for w in p.title.lower().split() if len(w) > 3})
    teachers = ["gpt4", "chatgpt", "llama", "palm", "gpt3", "claude", "qwen"]
    venues = ["emnlp", "acl", "iclr", "neurips", "arxiv", "icml", "naacl"]
    years = range(2016, 2027)
    return {
        "node": lambda r: {"node": r.choice(nodes)},
        "node+year_min+has_code": lambda r: {
            "node": r.choice(nodes),
            "year_min": r.choice(years),
            "has_code": True,
        },
        "teacher+objective": lambda r: {
            "teacher": r.choice(teachers),
            "objective": r.choice(objectives),
        },
        "text+year_max": lambda r: {
            "text": " ".join(r.sample(words, r.randint(1, 2))),
            "year_max": r.choice(years),
        },
        "teacher_access+venue": lambda r: {
            "teacher_access": r.choice(["black-box", "white-box"]),
            "venue": r.choice(venues),
        },
        "method+since": lambda r: {
            "method": r.choice(methods),
            "since": f"{r.choice(years)}-{r.randint(1, 12):02d}",
        },
        "basis+origin": lambda r: {
            "basis": r.choice(["survey-list", "crosswalk", "reviewed"]),
            "origin": r.choice(["survey", "kd-atlas"]),
        },
        "cited+student+elicitation": lambda r: {
            "cited_by_survey": r.random() < 0.5,
            "student": r.choice(teachers),
            "elicitation": r.choice(elicitations),
        },
        "year range": lambda r: {"year_min": r.choice(years[:6]), "year_max": r.choice(years[5:])},
        "no filter": lambda r: {},
    }


def time_queries(kb: KnowledgeBase, per_combination: int) -> None:
    """Median and p95 of every filter combination over ``per_combination`` random queries,
    after one query of each has built the indexes (timed and printed on its own: a load does
    not build them, the first query that needs one does, once per load)."""
    rng = random.Random(1)
    mix = query_mix(kb)
    started = time.perf_counter()
    for make in mix.values():
        kb.query(**make(rng))
    first = (time.perf_counter() - started) * 1000
    print(f"first query of each combination (builds the indexes, once per load): {first:.1f} ms")
    worst = 0.0
    for name, make in mix.items():
        timings = []
        for _ in range(per_combination):
            kwargs = make(rng)
            started = time.perf_counter()
            kb.query(**kwargs)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p95 = timings[min(len(timings) - 1, int(0.95 * len(timings)))]
        worst = max(worst, p95)
        print(
            f"query {name:28s} median {statistics.median(timings):6.2f} ms, p95 {p95:6.2f} ms "
            f"(target p95 < {QUERY_TARGET_MS:.0f} ms)"
        )
    print(f"query p95, worst combination: {worst:.2f} ms (target < {QUERY_TARGET_MS:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50, help="per filter combination")
    parser.add_argument("--kind", choices=["real-size", "synthetic"], default="real-size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        if args.kind == "real-size":
            make_real_size_kb(root, args.papers)
        else:
            make_kb(root, args.papers)
        print(f"generated {args.kind} papers in {time.perf_counter() - started:.1f} s")
        time_loads(root)
        kb = kbtool.load(root)
        print(f"{len(kb.papers)} papers")
        time_queries(kb, args.queries)


if __name__ == "__main__":
    main()
