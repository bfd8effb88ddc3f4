"""Indexed queries return exactly what a plain filter over every paper returns.

The reference below filters papers one by one, straight from the meaning of each filter in
``KnowledgeBase.query``'s docstring; it shares no code with the indexes. It is compared with
``query``, ``papers_under`` and ``papers_using`` on the bundled knowledge base and on a
synthetic one (random papers over the real taxonomy and methods), for many random filter
combinations.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import Records
from kbtool.core.model import Basis, Paper, Placement

VENUES = ["arXiv", "ACL", "EMNLP", "Findings of  EMNLP", "ICLR", "NeurIPS", "Other"]
PEOPLE = ["GPT-4", "gpt4", "ChatGPT", "LLaMA 2", "LLaMA", "PaLM", "T5-XL", "Mistral"]
NEEDLES = ["gpt", "GPT4", "llama", "llama 2", "  LLaMA   2 ", "emnlp", "acl", "x", "5-x"]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _first_version(paper: Paper) -> tuple[int, int | None]:
    if paper.arxiv_id:
        return 2000 + int(paper.arxiv_id[:2]), int(paper.arxiv_id[2:4])
    return paper.year, paper.month


def _matches(kb: KnowledgeBase, paper: Paper, f: dict[str, Any]) -> bool:
    """Does ``paper`` pass every filter of ``f``? One paper at a time, no index."""

    def ancestors_or_self(node_id: str) -> set[str]:
        out: set[str] = set()
        current: str | None = node_id
        while current is not None:
            out.add(current)
            current = kb.nodes[current].parent
        return out

    checks = []
    if "node" in f:
        checks.append(any(f["node"] in ancestors_or_self(n) for n in paper.nodes))
    if "method" in f:
        checks.append(f["method"] in paper.methods)
    if "year_min" in f:
        checks.append(paper.year >= f["year_min"])
    if "year_max" in f:
        checks.append(paper.year <= f["year_max"])
    if f.get("venue"):
        checks.append(_norm(f["venue"]) in _norm(paper.venue))
    if "has_code" in f:
        checks.append(bool(paper.code) == f["has_code"])
    if f.get("teacher"):
        checks.append(any(_norm(f["teacher"]) in _norm(t) for t in paper.teachers))
    if f.get("student"):
        checks.append(any(_norm(f["student"]) in _norm(s) for s in paper.students))
    if "objective" in f:
        checks.append(f["objective"] in paper.objectives or f["objective"] in paper.nodes)
    if "elicitation" in f:
        checks.append(f["elicitation"] in paper.elicitation or f["elicitation"] in paper.nodes)
    if "teacher_access" in f:
        access = {kb.methods[m].teacher_access.value for m in paper.methods if m in kb.methods}
        checks.append(f["teacher_access"] in access)
    if f.get("text"):
        checks.append(_norm(f["text"]) in _norm(paper.title + " " + " ".join(paper.authors)))
    if "cited_by_survey" in f:
        checks.append(paper.cited_by_survey == f["cited_by_survey"])
    if "since" in f:
        year, month = _first_version(paper)
        since = (int(f["since"][:4]), int(f["since"][5:]))
        checks.append(year > since[0] if month is None else (year, month) >= since)
    if "basis" in f:
        checks.append(any(p.basis.value == f["basis"] for p in paper.placements))
    if "origin" in f:
        checks.append(any(kb.nodes[n].origin.value == f["origin"] for n in paper.nodes))
    return all(checks)


def brute_force(kb: KnowledgeBase, f: dict[str, Any]) -> list[str]:
    """The ids matching ``f``, newest first (year, month, then id), from a plain scan."""
    found = [p for p in kb.papers.values() if _matches(kb, p, f)]
    found.sort(key=lambda p: (-p.year, -(p.month or 0), p.id))
    return [p.id for p in found]


def random_filters(kb: KnowledgeBase, rng: random.Random) -> dict[str, Any]:
    """One to four filters with random values, valid ids only."""
    options: dict[str, Any] = {
        "node": lambda: rng.choice(list(kb.nodes)),
        "method": lambda: rng.choice(list(kb.methods)),
        "year_min": lambda: rng.randint(2014, 2026),
        "year_max": lambda: rng.randint(2014, 2026),
        "venue": lambda: rng.choice(NEEDLES + ["", "neurips"]),
        "has_code": lambda: rng.random() < 0.5,
        "teacher": lambda: rng.choice(NEEDLES),
        "student": lambda: rng.choice(NEEDLES),
        "objective": lambda: rng.choice([n.id for n in kb.children("distillation-algorithms")]),
        "elicitation": lambda: rng.choice([n.id for n in kb.children("knowledge-elicitation")]),
        "teacher_access": lambda: rng.choice(["black-box", "white-box"]),
        "text": lambda: rng.choice(NEEDLES + ["distillation", "knowledge  DISTILLATION", ""]),
        "cited_by_survey": lambda: rng.random() < 0.5,
        "since": lambda: f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}",
        "basis": lambda: rng.choice([b.value for b in Basis]),
        "origin": lambda: rng.choice(["survey", "kd-atlas"]),
    }
    names = rng.sample(sorted(options), rng.randint(1, 4))
    return {name: options[name]() for name in names}


def synthetic_kb(n: int, seed: int) -> KnowledgeBase:
    """``n`` random papers over the bundled taxonomy and methods, built in memory."""
    real = kbtool.load()
    rng = random.Random(seed)
    leaves = [n for n in real.nodes if not real.children(n)]
    elicitation = [n.id for n in real.children("knowledge-elicitation")]
    objectives = [n.id for n in real.children("distillation-algorithms")]
    papers = []
    for i in range(n):
        nodes = rng.sample(list(real.nodes) if rng.random() < 0.2 else leaves, rng.randint(0, 3))
        arxiv = rng.random() < 0.7
        papers.append(
            Paper(
                id=f"p{i:05d}",
                title=f"Paper {i}: distillation of {rng.choice(PEOPLE)}",
                authors=[f"Author {rng.randint(0, 50)}"],
                year=rng.randint(2015, 2026),
                month=rng.choice([None, *range(1, 13)]),
                venue=rng.choice(VENUES),
                arxiv_id=f"{rng.randint(15, 26)}{rng.randint(1, 12):02d}.{i:05d}"
                if arxiv
                else None,
                code=["https://example.org/c"] if rng.random() < 0.4 else [],
                nodes=nodes,
                placements=[
                    Placement(node=nd, basis=rng.choice([Basis.REVIEWED, Basis.SURVEY_LIST]))
                    for nd in nodes
                ],
                methods=rng.sample(list(real.methods), rng.randint(0, 2)),
                teachers=rng.sample(PEOPLE, rng.randint(0, 2)),
                students=rng.sample(PEOPLE, rng.randint(0, 2)),
                elicitation=rng.sample(elicitation, rng.randint(0, 1)),
                objectives=rng.sample(objectives, rng.randint(0, 1)),
                cited_by_survey=rng.random() < 0.3,
            )
        )
    records = Records(
        root=real.root,
        nodes=list(real.nodes.values()),
        methods=list(real.methods.values()),
        papers=papers,
    )
    return KnowledgeBase(records)


@pytest.fixture(scope="module", params=["bundled", "synthetic"])
def kb(request: pytest.FixtureRequest) -> KnowledgeBase:
    return kbtool.load() if request.param == "bundled" else synthetic_kb(3000, seed=7)


def test_random_filter_combinations_match_a_plain_scan(kb: KnowledgeBase) -> None:
    rng = random.Random(11)
    nonempty = 0
    for _ in range(400):
        filters = random_filters(kb, rng)
        expected = brute_force(kb, filters)
        assert [p.id for p in kb.query(**filters)] == expected, filters
        nonempty += bool(expected)
    assert nonempty > 100  # the comparison is not between empty lists


def test_the_same_query_twice_gives_the_same_answer(kb: KnowledgeBase) -> None:
    """Memoised index lookups do not leak between queries."""
    first = [p.id for p in kb.query(teacher="gpt", year_min=2020)]
    kb.query(teacher="llama", venue="emnlp")
    assert [p.id for p in kb.query(teacher="gpt", year_min=2020)] == first
    assert first == brute_force(kb, {"teacher": "gpt", "year_min": 2020})
    kb.query(teacher="gpt", year_min=2020).clear()  # a caller's list is its own
    kb.papers_under(next(iter(kb.nodes))).clear()
    assert [p.id for p in kb.query(teacher="gpt", year_min=2020)] == first
    assert len(kb.papers_under(next(iter(kb.nodes)))) == len(
        brute_force(kb, {"node": next(iter(kb.nodes))})
    )


def test_papers_under_and_papers_using_match_a_plain_scan(kb: KnowledgeBase) -> None:
    for node_id in kb.nodes:
        assert [p.id for p in kb.papers_under(node_id)] == brute_force(kb, {"node": node_id})
        assert kb.count_under(node_id) == len(brute_force(kb, {"node": node_id}))
    for method_id in kb.methods:
        assert [p.id for p in kb.papers_using(method_id)] == brute_force(kb, {"method": method_id})


def test_no_filter_gives_every_paper_newest_first(kb: KnowledgeBase) -> None:
    assert [p.id for p in kb.query()] == brute_force(kb, {}) == list(kb.papers)
