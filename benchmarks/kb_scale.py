"""Scale benchmark: load + validate a synthetic knowledge base of N papers, time queries.

Usage: python benchmarks/kb_scale.py [--papers 10000] [--queries 200]
Targets on the 2-core reference machine: load+validate < 3 s for 10,000 papers,
median query < 5 ms. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import load_records
from kbtool.core.model import Paper
from kbtool.core.taxonomy import ELICITATION_NODES, OBJECTIVE_NODES
from kbtool.ingest.paper_io import paper_to_data, write_paper

REPO = Path(__file__).resolve().parent.parent
VENUES = ["arXiv", "ACL", "EMNLP", "ICLR", "NeurIPS", "Findings of EMNLP", "ICML"]
TEACHERS = ["GPT4", "ChatGPT", "LLaMA", "PaLM", "GPT3"]


def make_kb(root: Path, n: int, seed: int = 0) -> None:
    """Copy the real taxonomy and methods; write ``n`` random but valid papers."""
    rng = random.Random(seed)
    shutil.copytree(REPO / "taxonomy", root / "taxonomy")
    records = load_records(REPO)
    leaves = [nd.id for nd in records.nodes if nd.parent is not None]
    methods = [m.id for m in records.methods]
    # The methods point at real papers: keep those so the synthetic KB validates.
    for paper in records.papers:
        if any(paper.id in m.papers for m in records.methods):
            write_paper(root, paper)
    for i in range(n):
        year = rng.randint(2016, 2025)
        _write_fast(
            root,
            Paper(
                id=f"synthetic{i:05d}",
                title=f"Synthetic paper {i} on distillation of {rng.choice(TEACHERS)}",
                authors=[f"Author {rng.randint(0, 999)}", f"Author {rng.randint(0, 999)}"],
                year=year,
                month=rng.randint(1, 12),
                venue=rng.choice(VENUES),
                # "99MM" ids never collide with the real papers' ids
                arxiv_id=f"99{rng.randint(1, 12):02d}.{10000 + i:05d}",
                url=f"https://example.org/paper/{i}",
                code=[f"https://github.com/example/repo{i}"] if rng.random() < 0.4 else [],
                nodes=rng.sample(leaves, rng.randint(1, 3)),
                methods=rng.sample(methods, rng.randint(0, 2)),
                teachers=rng.sample(TEACHERS, 1),
                students=["LLaMA"],
                elicitation=rng.sample(list(ELICITATION_NODES), 1),
                objectives=rng.sample(list(OBJECTIVE_NODES), 1),
            ),
        )


def _write_fast(root: Path, paper: Paper) -> None:
    """Write a paper with libyaml's C dumper (the generator is not what is measured)."""
    text = yaml.dump(paper_to_data(paper), Dumper=yaml.CSafeDumper, sort_keys=False)
    (root / "papers" / f"{paper.id}.yaml").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_kb(root, args.papers)
        print(f"generated {args.papers} papers in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        records = load_records(root)
        kb = KnowledgeBase(records)
        load_s = time.perf_counter() - t0
        assert not records.problems, records.problems[:3]
        print(f"load + validate: {load_s:.2f} s for {len(kb.papers)} papers (target < 3 s)")
        rng = random.Random(1)
        nodes = list(kb.nodes)
        timings = []
        for _ in range(args.queries):
            kwargs = rng.choice(
                [
                    {"node": rng.choice(nodes)},
                    {"node": rng.choice(nodes), "year_min": 2021, "has_code": True},
                    {"teacher": "gpt4", "objective": "supervised-fine-tuning"},
                    {"text": "distillation of llama", "year_max": 2023},
                    {"teacher_access": "black-box", "venue": "emnlp"},
                ]
            )
            t0 = time.perf_counter()
            kb.query(**kwargs)
            timings.append(time.perf_counter() - t0)
        med = statistics.median(timings) * 1000
        p95 = sorted(timings)[int(0.95 * len(timings))] * 1000
        print(
            f"query: median {med:.2f} ms, p95 {p95:.2f} ms over {args.queries} queries "
            "(target < 5 ms)"
        )


if __name__ == "__main__":
    main()
