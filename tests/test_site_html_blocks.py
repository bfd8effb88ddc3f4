"""The hook that keeps marked HTML blocks out of Python-Markdown changes no page's HTML.

Every paper page of the bundled knowledge base is converted twice with the site's markdown
extensions: as it would be without the hook (marker lines removed) and through the hook's
set-aside and put-back. The two must be the same string. Then the hook's own edge cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import markdown
import pytest
import yaml

import kbtool
from kbtool.site import html_blocks
from kbtool.site.html_blocks import CLOSE, OPEN, put_back, set_aside
from kbtool.site.render import SITE_SRC, render_docs


def site_markdown() -> markdown.Markdown:
    """Python-Markdown with the extensions and options of ``site/mkdocs.yml``."""
    config = yaml.safe_load((SITE_SRC / "mkdocs.yml").read_text(encoding="utf-8"))
    names: list[str] = []
    options: dict[str, Any] = {}
    for item in config["markdown_extensions"]:
        name, settings = next(iter(item.items())) if isinstance(item, dict) else (item, None)
        names.append(name)
        options[name] = {k: v for k, v in (settings or {}).items() if k != "check_paths"}
    return markdown.Markdown(extensions=names, extension_configs=options)


def without_markers(text: str) -> str:
    return text.replace(f"{OPEN}\n", "").replace(f"\n{CLOSE}", "")


def body(page: Path) -> str:
    """A page's markdown without its front matter (mkdocs converts only that)."""
    return page.read_text(encoding="utf-8").split("---\n", 2)[2]


@pytest.fixture(scope="module")
def paper_pages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    docs = tmp_path_factory.mktemp("docs")
    render_docs(kbtool.load(), docs)
    return sorted((docs / "papers").glob("*.md"))


def test_every_paper_page_converts_to_the_same_html_with_the_hook(
    paper_pages: list[Path],
) -> None:
    md = site_markdown()
    assert len(paper_pages) > 700
    for page in paper_pages:
        text = body(page)
        assert text.count(OPEN) == 3 and text.count(CLOSE) == 3, page.name
        plain = md.reset().convert(without_markers(text))
        aside, blocks = set_aside(text)
        assert len(blocks) == 3 and OPEN not in aside, page.name
        assert put_back(md.reset().convert(aside), blocks) == plain, page.name


def test_blocks_are_normalised_as_python_markdown_normalises_raw_html() -> None:
    text = f"{OPEN}\n<div>\n<pre>\ta\r\n  \n\tb</pre>\n</div>\n{CLOSE}\n\n## Next\n"
    md = site_markdown()
    aside, blocks = set_aside(text)
    assert blocks == ["<div>\n<pre>   a\n\n    b</pre>\n</div>"]  # tab stops every 4 columns
    assert put_back(md.convert(aside), blocks) == md.reset().convert(without_markers(text))


def test_unmarked_text_and_stray_placeholders_are_left_alone() -> None:
    text = "# Title\n\n<div>not marked</div>\n"
    assert set_aside(text) == (text, [])
    stray = '<div data-kb-html="7"></div>'
    assert put_back(f"<p>x</p>{stray}", ["<b>kept</b>"]) == f"<p>x</p>{stray}"
    assert put_back('<div data-kb-html="0"></div>', ["<b>kept</b>"]) == "<b>kept</b>"


def test_the_hook_events_pair_up_by_page() -> None:
    class File:
        def __init__(self, uri: str) -> None:
            self.src_uri = uri

    class Page:
        def __init__(self, uri: str) -> None:
            self.file = File(uri)

    first, second = Page("papers/a.md"), Page("papers/b.md")
    a = html_blocks.on_page_markdown(f"{OPEN}\n<p>A</p>\n{CLOSE}\n", page=first)
    b = html_blocks.on_page_markdown(f"{OPEN}\n<p>B</p>\n{CLOSE}\n", page=second)
    assert html_blocks.on_page_content(b, page=second) == "<p>B</p>\n"
    assert html_blocks.on_page_content(a, page=first) == "<p>A</p>\n"
    assert html_blocks.on_page_content(a, page=first) == a  # nothing left for that page


def test_the_generated_configuration_loads_the_hook(tmp_path: Path) -> None:
    from kbtool.site.render import write_mkdocs_config

    config = write_mkdocs_config(tmp_path / "mkdocs.yml", tmp_path / "docs", tmp_path / "out", [])
    hooks = yaml.safe_load(config.read_text(encoding="utf-8"))["hooks"]
    assert [Path(h).resolve() for h in hooks] == [Path(html_blocks.__file__).resolve()]
