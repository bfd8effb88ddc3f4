"""Paper pages: rendered from the paper, the taxonomy and the methods only, so that a page whose
inputs are unchanged is reused from the previous build instead of rendered again.

A paper page's template sees a narrow view of the knowledge base (nodes, methods, ancestors)
and none of its counts; anything else is undefined (jinja2's strict undefined raises), so the
key below, a hash of exactly those inputs plus the templates and the code that renders them,
cannot miss a dependency silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core
from markupsafe import Markup

from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.model import Paper, TaxonomyNode
from kbtool.core.provenance import NEW_SINCE_TEXT, node_origin, venue_label


@dataclass
class PaperPageCache:
    """Keys and BibTeX entries of the paper pages of the previous build (``old``), and those
    of this build (``new``), by page path."""

    old: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    new: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Rendered rows of paper tables by row key (see ``RowCache``), previous and this build.
    old_rows: Mapping[str, str] = field(default_factory=dict)
    new_rows: dict[str, str] = field(default_factory=dict)
    #: Each paper's key in this build (its page's inputs), by paper id.
    keys: dict[str, str] = field(default_factory=dict)
    #: The pages of ``old`` still present in the docs directory, as the render found them.
    present: set[str] = field(default_factory=set)
    #: The paper index's data attributes of each paper, by paper key: previous, this build.
    old_attrs: Mapping[str, str] = field(default_factory=dict)
    new_attrs: dict[str, str] = field(default_factory=dict)
    #: Rows made in this build by (paper key, depth, attributes): no hashing the second time.
    _built: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def attrs(self, paper: Paper, make: Callable[[Paper], str]) -> Markup:
        """The data attributes ``make`` gives ``paper`` (a function of the paper and the
        taxonomy only), reused from the previous build when the paper's key is unchanged."""
        key = self.keys[paper.id]
        text = self.old_attrs.get(key)
        if text is None:
            text = str(make(paper))
        self.new_attrs[key] = text
        return Markup(text)

    def row(self, paper: Paper, base: str, attrs: str, render: Callable[..., Any]) -> str:
        """The table row of ``paper`` on a page at depth ``base`` with data attributes
        ``attrs``: rendered by ``render`` (the row macro) once, then reused, also from the
        previous build when the paper's inputs are unchanged."""
        inputs = (self.keys[paper.id], base, attrs)
        text = self._built.get(inputs)
        if text is None:
            key = hashlib.blake2b("|".join(inputs).encode(), digest_size=20).hexdigest()
            text = self.old_rows.get(key)
            if text is None:
                text = str(render(paper, attrs))
            self.new_rows[key] = self._built[inputs] = text
        return text

    def rows(
        self,
        papers: list[Paper],
        base: str,
        facets: Mapping[str, str] | None,
        render: Callable[..., Any],
    ) -> Markup:
        """The rows of a paper table, each followed by a newline (see ``row``; ``facets``:
        each paper's data attributes, for the paper index)."""
        row = self.row
        return Markup(
            "".join(f"{row(p, base, facets[p.id] if facets else '', render)}\n" for p in papers)
        )


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
    from kbtool.core import provenance, query_index
    from kbtool.export import bibtex
    from kbtool.site import new_since_survey, render, templating

    hasher = hashlib.blake2b(digest_size=20)
    sources = sorted((site_src / "templates").rglob("*"))
    code = (bibtex, new_since_survey, render, templating, provenance, query_index)
    sources += [Path(m.__file__ or "") for m in code]
    sources.append(Path(__file__))
    for path in sources:
        if path.is_file():
            hasher.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for model in (*kb.nodes.values(), *kb.methods.values()):
        hasher.update(model.model_dump_json().encode())
    hasher.update(extra.encode())
    return hasher.hexdigest()


def paper_keys(kb: KnowledgeBase, shared: str) -> dict[str, str]:
    """Each paper's key: a digest of the shared inputs and the paper."""
    return {
        pid: hashlib.blake2b((shared + p.model_dump_json()).encode(), digest_size=20).hexdigest()
        for pid, p in kb.papers.items()
    }


def render_paper_pages(
    kb: KnowledgeBase,
    template: Any,  # noqa: ANN401 - a jinja2 Template
    write_file: Callable[[str, str], None],
    front_matter: Callable[[str], str],
    to_bibtex: Callable[[list[Paper]], str],
    role_names: dict[str, str],
    cache: PaperPageCache,
) -> dict[str, str]:
    """Write every paper page (or keep the previous one when its key, in ``cache.keys``,
    matches and the render found the file, ``cache.present``); returns each paper's BibTeX
    entry by id, for the downloads."""
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
        key = cache.keys[paper.id]
        previous = cache.old.get(rel)
        if previous is not None and previous[0] == key and rel in cache.present:
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
        data = pydantic_core.from_json(path.read_bytes())
        rows, attrs = data["rows"], data["attrs"]
        if not all(isinstance(v, str) for v in (*rows.values(), *attrs.values())):
            return PaperPageCache()
        return PaperPageCache(
            old={k: (v[0], v[1]) for k, v in data["pages"].items()},
            old_rows=rows,
            old_attrs=attrs,
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return PaperPageCache()
