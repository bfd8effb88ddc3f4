"""An mkdocs hook that keeps the HTML blocks the renderer marks out of Python-Markdown.

A paper page is mostly HTML that our templates already wrote. Python-Markdown would parse
every tag of it only to pass it through unchanged, which was the larger part of converting
10,000 paper pages. The templates put such a block between the lines ``<!--kb-html-->`` and
``<!--/kb-html-->``; before conversion each marked block becomes a placeholder element, and
after it the placeholder becomes the block again, its whitespace normalised as
Python-Markdown normalises a raw HTML block (line ends, tabs expanded, blank lines emptied).
So a page's HTML is what it would be without the hook (a test checks every paper page).

mkdocs loads this file by its path (``hooks`` in the generated ``mkdocs.yml``), so it
imports nothing but the standard library.
"""

from __future__ import annotations

import re
from typing import Any

OPEN = "<!--kb-html-->"
CLOSE = "<!--/kb-html-->"
#: Python-Markdown's default, which our configuration keeps.
TAB_LENGTH = 4
_BLOCK = re.compile(r"^<!--kb-html-->\n(.*?)\n<!--/kb-html-->$", re.MULTILINE | re.DOTALL)
_PLACEHOLDER = re.compile(r'<div data-kb-html="(\d+)"></div>')
_SPACES_ONLY = re.compile(r"^ +$", re.MULTILINE)
#: The blocks set aside from each page being converted, by source path.
_pending: dict[str, list[str]] = {}


def set_aside(markdown: str) -> tuple[str, list[str]]:
    """``markdown`` with each marked block replaced by a placeholder, and the blocks."""
    blocks: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        blocks.append(_normalised(match.group(1)))
        return f'<div data-kb-html="{len(blocks) - 1}"></div>'

    return _BLOCK.sub(placeholder, markdown), blocks


def put_back(html: str, blocks: list[str]) -> str:
    """``html`` with each placeholder replaced by its block."""
    if not blocks:
        return html

    def block(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return blocks[index] if index < len(blocks) else match.group(0)

    return _PLACEHOLDER.sub(block, html)


def _normalised(block: str) -> str:
    """The block as Python-Markdown's whitespace normalisation leaves a raw HTML block."""
    text = block.replace("\x02", "").replace("\x03", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(TAB_LENGTH)
    return _SPACES_ONLY.sub("", text)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:  # noqa: ANN401
    """mkdocs event: set the page's marked blocks aside before conversion."""
    text, blocks = set_aside(markdown)
    _pending[page.file.src_uri] = blocks
    return text


def on_page_content(html: str, page: Any, **_: Any) -> str:  # noqa: ANN401
    """mkdocs event: put the page's blocks back into its converted HTML."""
    return put_back(html, _pending.pop(page.file.src_uri, []))
