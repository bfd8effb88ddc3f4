"""``kbtool show``'s summary for people: a paper, method or taxonomy node as a few labelled
lines (``--format json`` gives the stored record instead)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from rich.text import Text

from kbtool.cli.tables import short_loss
from kbtool.core.model import Method, Paper, TaxonomyNode

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase

Facts = list[tuple[str, list[str]]]


def summary(kb: KnowledgeBase, item: Paper | Method | TaxonomyNode, width: int) -> list[Text]:
    """Renderables describing ``item`` for a ``width``-column terminal: a heading, then
    label/value lines."""
    if isinstance(item, Paper):
        title, facts = item.title, _paper(kb, item)
    elif isinstance(item, Method):
        title, facts = item.name, _method(kb, item)
    else:
        title, facts = item.name, _node(kb, item)
    return [Text(title, style="bold"), _fields(facts, width)]


def _fields(rows: list[tuple[str, list[str]]], width: int) -> Text:
    """Label/value lines; each value starts a line and wraps under itself, not the label."""
    indent = max(len(label) for label, _ in rows) + 2
    room = max(width - indent, 20)
    text = Text()
    for label, values in rows:
        lines = [
            line
            for value in values
            for line in textwrap.wrap(value, room, break_on_hyphens=False) or [""]
        ]
        for i, line in enumerate(lines):
            text.append(f"{label if i == 0 else '':<{indent}}", style="bold")
            text.append(f"{line}\n")
    text.rstrip()
    return text


def _node_path(kb: KnowledgeBase, node_id: str) -> str:
    if node_id not in kb.nodes:
        return node_id
    names = " › ".join(n.name for n in kb.ancestors(node_id))
    return f"{names} ({node_id})"


def _method_label(kb: KnowledgeBase, method_id: str) -> str:
    method = kb.methods.get(method_id)
    return f"{method_id} ({method.name})" if method else method_id


def _paper(kb: KnowledgeBase, paper: Paper) -> Facts:
    where = f"{paper.venue} {paper.year}"
    links = list(dict.fromkeys(u for u in (paper.url, paper.arxiv_url) if u))
    links += [f"code: {u}" for u in paper.code] + [f"data: {u}" for u in paper.data]
    facts = [
        ("Authors", [", ".join(paper.authors) or "(unknown)"]),
        ("Venue", [where]),
        ("arXiv", [paper.arxiv_id] if paper.arxiv_id else []),
        ("Nodes", [_node_path(kb, n) for n in paper.nodes] or ["(not placed)"]),
        ("Methods", [_method_label(kb, m) for m in paper.methods]),
        ("Elicitation", [", ".join(paper.elicitation)] if paper.elicitation else []),
        ("Objectives", [", ".join(paper.objectives)] if paper.objectives else []),
        ("Teachers", [", ".join(paper.teachers)] if paper.teachers else []),
        ("Students", [", ".join(paper.students)] if paper.students else []),
        ("Links", links),
        ("Survey", ["cited by the survey"] if paper.cited_by_survey else []),
        ("BibTeX key", [paper.id]),
    ]
    return facts


def _method(kb: KnowledgeBase, method: Method) -> Facts:
    loss = [f"{short_loss(method.loss)}  ({method.loss})"] if method.loss else ["(none yet)"]
    facts = [
        ("Id", [method.id]),
        ("Nodes", [_node_path(kb, n) for n in method.nodes]),
        ("Teacher", [method.teacher_access.value]),
        ("On-policy", ["yes" if method.on_policy else "no"]),
        ("Same tokenizer", ["required" if method.same_tokenizer_required else "not required"]),
        ("Loss", loss),
        ("Formula", [method.formula]),
        ("Papers", [f"{p} ({kb.papers[p].title})" if p in kb.papers else p for p in method.papers]),
        ("Generalizes", [f"{r.method} when {r.when}" for r in method.generalizes]),
        ("Description", [method.description]),
    ]
    return facts


def _node(kb: KnowledgeBase, node: TaxonomyNode) -> Facts:
    facts = [
        ("Id", [node.id]),
        ("Path", [_node_path(kb, node.id)]),
        ("Children", [f"{c.name} ({c.id})" for c in kb.children(node.id)]),
        ("Papers", [f"{len(kb.papers_under(node.id))} (descendants included)"]),
        ("Methods", [_method_label(kb, m.id) for m in kb.methods_under(node.id)]),
        ("Description", [node.description]),
    ]
    return facts
