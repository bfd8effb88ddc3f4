"""JSON export: papers in the shape of their YAML files, or the whole knowledge base."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kbtool.core.model import Paper
from kbtool.export.json_text import dumps_indented
from kbtool.ingest.paper_io import paper_to_data

if TYPE_CHECKING:
    from kbtool.core.knowledge_base import KnowledgeBase


def papers_to_json(papers: list[Paper]) -> str:
    """Papers as a JSON list in the same shape as their YAML files."""
    return dumps_indented([paper_to_data(p) for p in papers])


def to_json(kb: KnowledgeBase) -> str:
    """The whole knowledge base (nodes, methods, papers) as one JSON document."""
    doc = {
        "nodes": [n.model_dump(mode="json") for n in kb.nodes.values()],
        "methods": [m.model_dump(mode="json") for m in kb.methods.values()],
        "papers": [paper_to_data(p) for p in kb.papers.values()],
    }
    return dumps_indented(doc)
