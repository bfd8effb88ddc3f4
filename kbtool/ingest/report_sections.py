"""Sections of ``papers/IMPORT_REPORT.md`` owned by different importers, kept apart by
HTML-comment markers so that one importer rewrites its section without clobbering another's."""

from __future__ import annotations

import re


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def set_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` replaced by ``body`` (appended if absent)."""
    begin, end = _markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block


def marked_sections(text: str) -> str:
    """Every marked section of ``text``, in order (what another importer must keep)."""
    found = re.findall(r"<!-- ([^:>]+): begin -->.*?<!-- \1: end -->\n?", text, re.DOTALL)
    blocks = []
    for name in dict.fromkeys(found):
        begin, end = _markers(name)
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        blocks.append(text[start:stop] + "\n")
    return "".join(blocks)
