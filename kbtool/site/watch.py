"""Watch a knowledge base's ``taxonomy/`` and ``papers/`` and rebuild its site incrementally.

A small polling watcher (file sizes and times, no extra dependency): ``kbtool serve`` calls
``SiteWatcher.poll`` every second; when a file was added, removed or changed, the knowledge base
is loaded again and the site rebuilt incrementally into the same directory (atomically, so the
server goes on serving the old site until the new one is in place). Bad data or a failed build
is reported and the old site stays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kbtool.core.errors import KnowledgeBaseError
from kbtool.core.knowledge_base import load
from kbtool.site.build import BuildResult, SiteBuildError, build_site

WATCHED = ("taxonomy", "papers")
Snapshot = dict[str, tuple[int, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every file under the watched directories: (size, mtime_ns, ctime_ns) by path."""
    found: Snapshot = {}
    for name in WATCHED:
        for directory, _, files in os.walk(root / name):
            for file in files:
                path = os.path.join(directory, file)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # removed while walking: the next poll sees it gone
                found[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return found


@dataclass
class SiteWatcher:
    """Rebuilds the site of ``root`` into ``out`` when its files change."""

    root: Path
    out: Path
    build: Callable[..., BuildResult] = build_site
    last: Snapshot = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.last = snapshot(self.root)

    def poll(self) -> str | None:
        """Rebuild if anything changed since the last poll; a line saying what happened, or
        None when nothing changed."""
        current = snapshot(self.root)
        if current == self.last:
            return None
        self.last = current
        try:
            kb = load(self.root)
        except KnowledgeBaseError as exc:
            return f"not rebuilt, the knowledge base has problems:\n{exc}"
        try:
            result = self.build(kb, self.out, incremental=True)
        except SiteBuildError as exc:
            return f"not rebuilt, the site build failed:\n{exc}"
        pages = sum(result.pages.values())
        return f"rebuilt {pages} pages in {result.seconds:.1f} s"
