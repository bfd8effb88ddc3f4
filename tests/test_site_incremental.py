"""An incremental site build gives byte for byte the site a full build gives, after a paper is
edited, added or deleted, and it really reuses the pages that did not change.

Each test copies the small site fixture to ``tmp_path``, builds it (filling the page cache),
changes one paper file, then builds the site again twice: incrementally and in full without the
cache, and compares every file of the two outputs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kbtool
from kbtool.site import build_site, mkdocs_run

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "site_kb"
PAPER = "papers/gu-2023-minillm.yaml"


@pytest.fixture(autouse=True)
def fixed_epoch() -> Iterator[None]:
    """Builds stamp the date into the sitemap: fix it, as for any reproducible build."""
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    yield
    if old is None:
        del os.environ["SOURCE_DATE_EPOCH"]
    else:
        os.environ["SOURCE_DATE_EPOCH"] = old


@pytest.fixture
def kb_root(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".cache"))
    return root


def tree(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def build(root: Path, out: Path, incremental: bool) -> None:
    cache = root / ".cache" / "kbtool" / "site"
    build_site(
        kbtool.load(root),
        out,
        benchmark_json=None,
        zoo_dir=None,
        incremental=incremental,
        cache_dir=cache if incremental else root / "no-cache-dir-used",
    )


def assert_same_sites(root: Path, tmp_path: Path) -> tuple[dict[str, bytes], list[str]]:
    """Build incrementally and in full; the two sites must be identical. Returns the site and
    the pages mkdocs built again in the incremental build."""
    built: list[str] = []
    original = mkdocs_run.PageCache.store

    def spy(self: mkdocs_run.PageCache, rel: str, *args: Any) -> None:  # noqa: ANN401
        built.append(rel)
        original(self, rel, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mkdocs_run.PageCache, "store", spy)
        build(root, tmp_path / "incremental", incremental=True)
    shutil.rmtree(root / "no-cache-dir-used", ignore_errors=True)
    build(root, tmp_path / "full", incremental=False)
    incremental, full = tree(tmp_path / "incremental"), tree(tmp_path / "full")
    assert sorted(incremental) == sorted(full)
    assert [name for name in full if incremental[name] != full[name]] == []
    return full, built


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_after_an_edit_only_changed_pages_are_built_and_the_site_is_identical(
    kb_root: Path, tmp_path: Path
) -> None:
    build(kb_root, tmp_path / "first", incremental=True)
    title = "MiniLLM: Knowledge Distillation of Large Language Models"
    assert title in (kb_root / PAPER).read_text(encoding="utf-8")
    edit(kb_root, PAPER, title, "MiniLLM, edited: Knowledge Distillation of LLMs")
    site, built = assert_same_sites(kb_root, tmp_path)
    assert "MiniLLM, edited" in site["papers/gu-2023-minillm.html"].decode()
    assert "papers/gu-2023-minillm.md" in built
    assert "papers/hinton-2015-distilling.md" not in built  # reused from the cache
    assert "contributing.md" not in built  # an index page whose markdown did not change
    assert "papers.md" in built  # the paper index shows the new title


def test_after_an_addition_the_site_is_identical(kb_root: Path, tmp_path: Path) -> None:
    build(kb_root, tmp_path / "first", incremental=True)
    new = kb_root / "papers" / "gu-2023-minillm-copy.yaml"
    shutil.copy(kb_root / PAPER, new)
    edit(
        kb_root,
        "papers/gu-2023-minillm-copy.yaml",
        "id: gu-2023-minillm",
        "id: gu-2023-minillm-copy",
    )
    text = new.read_text(encoding="utf-8")
    if "arxiv_id:" in text:
        line = next(x for x in text.splitlines() if x.startswith("arxiv_id:"))
        edit(kb_root, "papers/gu-2023-minillm-copy.yaml", line, "arxiv_id: '2399.99999'")
    site, _ = assert_same_sites(kb_root, tmp_path)
    assert "papers/gu-2023-minillm-copy.html" in site


def test_after_a_deletion_the_site_is_identical(kb_root: Path, tmp_path: Path) -> None:
    build(kb_root, tmp_path / "first", incremental=True)
    (kb_root / "papers" / "cited-2022-only.yaml").unlink()
    site, _ = assert_same_sites(kb_root, tmp_path)
    assert "papers/cited-2022-only.html" not in site


def test_a_damaged_page_cache_is_not_used(kb_root: Path, tmp_path: Path) -> None:
    """A cached page whose stored output lost bytes, or a state file that is not JSON, means
    those pages are built again, with the same result."""
    build(kb_root, tmp_path / "first", incremental=True)
    cache = kb_root / ".cache" / "kbtool" / "site"
    stored = sorted((cache / "pages").glob("*.html"))
    assert stored
    stored[0].unlink()
    stored[1].write_bytes(stored[1].read_bytes()[:-10])  # a truncated output
    assert_same_sites(kb_root, tmp_path)
    (cache / "state.json").write_text("{not json", encoding="utf-8")
    shutil.rmtree(tmp_path / "incremental")
    shutil.rmtree(tmp_path / "full")
    assert_same_sites(kb_root, tmp_path)


def test_a_build_in_parallel_shares_equals_a_single_process_build(
    kb_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large first builds make the paper and taxonomy pages in forked processes first; the
    final build only assembles them, and the site is the one a single process builds."""
    monkeypatch.setattr(mkdocs_run, "PARALLEL_MIN_PAGES", 0)
    built_here: list[str] = []
    original = mkdocs_run.PageCache.store

    def spy(self: mkdocs_run.PageCache, rel: str, *args: Any) -> None:  # noqa: ANN401
        built_here.append(rel)
        original(self, rel, *args)

    monkeypatch.setattr(mkdocs_run.PageCache, "store", spy)
    kb = kbtool.load(kb_root)
    monkeypatch.setattr(mkdocs_run, "WORKERS", 2)
    build_site(
        kb,
        tmp_path / "parallel",
        benchmark_json=None,
        zoo_dir=None,
        cache_dir=tmp_path / "cache-parallel",
    )
    in_parent = [rel for rel in built_here if rel.startswith(("papers/", "taxonomy/"))]
    assert in_parent == []  # every such page came from the forked builds
    monkeypatch.setattr(mkdocs_run, "WORKERS", 1)
    build_site(
        kb,
        tmp_path / "single",
        benchmark_json=None,
        zoo_dir=None,
        cache_dir=tmp_path / "cache-single",
    )
    assert any(rel.startswith("papers/") for rel in built_here)
    parallel, single = tree(tmp_path / "parallel"), tree(tmp_path / "single")
    assert sorted(parallel) == sorted(single)
    assert [name for name in single if parallel[name] != single[name]] == []


def test_a_page_key_covers_the_files_its_snippets_include(tmp_path: Path) -> None:
    """Method pages include reference code through snippet lines: the code is part of the
    page's inputs, so editing the included file changes the key."""
    (tmp_path / "loss.py").write_text("def loss():\n    return 1\n", encoding="utf-8")
    source = b'# Page\n\n``` python\n--8<-- "loss.py:1:2"\n```\n'
    config = {"mdx_configs": {"pymdownx.snippets": {"base_path": [str(tmp_path)]}}}
    before = mkdocs_run._PageSteps._included(source, config)
    assert before is not None and before != b""
    (tmp_path / "loss.py").write_text("def loss():\n    return 2\n", encoding="utf-8")
    after = mkdocs_run._PageSteps._included(source, config)
    assert after is not None and after != before
    (tmp_path / "loss.py").unlink()
    assert mkdocs_run._PageSteps._included(source, config) not in (None, before, after)
    assert mkdocs_run._PageSteps._included(b"# no snippets\n", config) == b""
    inline = b'Text with an inline --8<-- "loss.py" form\n'
    assert mkdocs_run._PageSteps._included(inline, config) is None  # never cached


def test_a_template_edit_reaches_every_page_despite_the_caches(
    kb_root: Path, tmp_path: Path
) -> None:
    """Compiled templates are kept between builds (for the site's and the theme's jinja2), and
    pages are reused by key; an edited template must still show on every page it renders."""
    site_src = tmp_path / "site-src"
    shutil.copytree(REPO / "site", site_src)
    cache = kb_root / ".cache" / "kbtool" / "site"

    def build_with(out: Path) -> None:
        build_site(
            kbtool.load(kb_root),
            out,
            benchmark_json=None,
            zoo_dir=None,
            site_src=site_src,
            incremental=True,
            cache_dir=cache,
        )

    build_with(tmp_path / "first")
    assert any((cache / "templates").iterdir())  # compiled templates were kept
    template = site_src / "templates" / "paper.md.j2"
    template.write_text(
        template.read_text(encoding="utf-8") + "\nTEMPLATE-EDIT-MARKER\n", encoding="utf-8"
    )
    build_with(tmp_path / "second")
    pages = sorted((tmp_path / "second" / "papers").glob("*.html"))
    assert pages and all("TEMPLATE-EDIT-MARKER" in p.read_text(encoding="utf-8") for p in pages)


def test_the_configuration_identity_covers_the_hooks_code(tmp_path: Path) -> None:
    """Every page key includes the configuration; a hook sees every page, so its code is part
    of that identity too (an edited hook must not leave kept pages stale)."""
    hook = tmp_path / "hook.py"
    hook.write_text("def on_page_content(html, **kwargs):\n    return html\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"site_name: x\nhooks:\n  - {hook}\ndocs_dir: a\n", encoding="utf-8")
    before = mkdocs_run._config_identity(config)
    config.write_text(f"site_name: x\nhooks:\n  - {hook}\ndocs_dir: b\n", encoding="utf-8")
    assert mkdocs_run._config_identity(config) == before  # where the docs are does not count
    hook.write_text("def on_page_content(html, **kwargs):\n    return html + 'x'\n")
    assert mkdocs_run._config_identity(config) != before
