"""Paper pages: rendered from the paper, the taxonomy and the methods only, so that a page whose
inputs are unchanged is reused from the previous build instead of rendered again.

A paper page's template sees a narrow view of the knowledge base (nodes, methods, ancestors)
and none of its counts; anything else is undefined (jinja2's strict undefined raises), so the
key below, a hash of exactly those inputs plus the templates and the code that renders them,
cannot miss a dependency silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Paper, TaxonomyNode
from kbtool.core.provenance import NEW_SINCE_TEXT, node_origin, venue_label


@dataclass
class PaperPageCache:
    """Keys and BibTeX entries of the paper pages of the previous build (``old``), and those
    of this build (``new``), by page path."""

    old: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    new: dict[str, tuple[str, str]] = field(default_factory=dict)


class PaperView:
    """What a paper page may read of the knowledge base."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.nodes = kb.nodes
        self.methods = kb.methods
        self._kb = kb

    def ancestors(self, node_id: str) -> list[TaxonomyNode]:
        """The path from the pillar down to ``node_id``."""
        return self._kb.ancestors(node_id)


def shared_inputs(kb: KnowledgeBase, site_src: Path, extra: str) -> str:
    """A digest of every input paper pages share: templates, rendering code, taxonomy,
    methods, and ``extra`` (the caller's constants)."""
    from kbtool.export import bibtex
    from kbtool.site import new_since_survey, render

    hasher = hashlib.blake2b(digest_size=20)
    sources = sorted((site_src / "templates").rglob("*"))
    sources += [Path(m.__file__ or "") for m in (bibtex, new_since_survey, render)]
    sources.append(Path(__file__))
    for path in sources:
        if path.is_file():
            hasher.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for model in (*kb.nodes.values(), *kb.methods.values()):
        hasher.update(model.model_dump_json().encode())
    hasher.update(extra.encode())
    return hasher.hexdigest()


def render_paper_pages(
    kb: KnowledgeBase,
    template: Any,  # noqa: ANN401 - a jinja2 Template
    write_file: Callable[[str, str], None],
    front_matter: Callable[[str], str],
    to_bibtex: Callable[[list[Paper]], str],
    role_names: dict[str, str],
    shared: str,
    cache: PaperPageCache,
    docs: Path,
) -> dict[str, str]:
    """Write every paper page (or keep the previous one when its key matches and the file is
    there); returns each paper's BibTeX entry by id, for the downloads."""
    view = PaperView(kb)
    context = {
        "kb": view,
        "origin_of": {nid: node_origin(n) for nid, n in kb.nodes.items()},
        "venue_label": venue_label,
        "new_since": NEW_SINCE_TEXT,
        "base": "../",
        "role_names": role_names,
    }
    from kbtool.site.new_since_survey import BASIS_NAMES, ORIGIN_NAMES

    context |= {"basis_names": BASIS_NAMES, "origin_names": ORIGIN_NAMES}
    entries: dict[str, str] = {}
    for paper in kb.papers.values():
        rel = f"papers/{paper.id}.md"
        key = hashlib.blake2b(
            (shared + paper.model_dump_json()).encode(), digest_size=20
        ).hexdigest()
        previous = cache.old.get(rel)
        if previous is not None and previous[0] == key and (docs / rel).is_file():
            entry = previous[1]
        else:
            entry = to_bibtex([paper])
            text = template.render(
                **context,
                front_matter=front_matter(paper.title),
                paper=paper,
                bibtex=entry.strip(),
            )
            write_file(rel, text)
        entries[paper.id] = entry
        cache.new[rel] = (key, entry)
    return entries


def read_cache(path: Path) -> PaperPageCache:
    """The paper-page cache saved at ``path`` (empty when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PaperPageCache(old={k: (v[0], v[1]) for k, v in data["pages"].items()})
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return PaperPageCache()
