"""JSON and CSL-JSON exports of the knowledge base (for reference managers and the site)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kbtool.core.model import Paper
from kbtool.export.bibtex import JOURNALS
from kbtool.ingest.paper_io import paper_to_data

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase


def _csl_name(author: str) -> dict[str, str]:
    parts = author.rsplit(" ", 1)
    return {"family": parts[-1], "given": parts[0]} if len(parts) == 2 else {"literal": author}


def to_csl(paper: Paper) -> dict[str, Any]:
    """One CSL-JSON item."""
    date_parts = [paper.year, paper.month] if paper.month else [paper.year]
    item: dict[str, Any] = {
        "id": paper.id,
        "type": "article-journal"
        if paper.venue in JOURNALS
        else ("article" if paper.venue in ("arXiv", "Other") else "paper-conference"),
        "title": paper.title,
        "author": [_csl_name(a) for a in paper.authors],
        "issued": {"date-parts": [date_parts]},
        "container-title": paper.venue,
    }
    if paper.url:
        item["URL"] = paper.url
    if paper.arxiv_id:
        item["number"] = f"arXiv:{paper.arxiv_id}"
    return item


def to_csl_json(papers: list[Paper]) -> str:
    """CSL-JSON text (a list of items) of ``papers``."""
    return json.dumps([to_csl(p) for p in papers], indent=2, ensure_ascii=False) + "\n"


def papers_to_json(papers: list[Paper]) -> str:
    """Papers as a JSON list in the same shape as their YAML files."""
    return json.dumps([paper_to_data(p) for p in papers], indent=2, ensure_ascii=False) + "\n"


def to_json(kb: KnowledgeBase) -> str:
    """The whole knowledge base (nodes, methods, papers) as one JSON document."""
    doc = {
        "nodes": [n.model_dump(mode="json") for n in kb.nodes.values()],
        "methods": [m.model_dump(mode="json") for m in kb.methods.values()],
        "papers": [paper_to_data(p) for p in kb.papers.values()],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
