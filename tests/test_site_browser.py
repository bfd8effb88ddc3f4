"""Drive the built site in a real headless Chromium (Debian's, through Playwright).

The site is served on 127.0.0.1 (an ephemeral port); every request that would leave
127.0.0.1 is aborted and recorded, and the tests fail if any was attempted. Screenshots go
to ``build/screenshots/`` for review. Chromium is never downloaded by Playwright: the tests
FAIL (they do not skip) when ``/usr/bin/chromium`` is missing, and say how to install it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import kbtool
from kbtool.site import build_site, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Locator, Page, Route

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "site_kb"
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_TITLE = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}. The browser tests drive Debian's Chromium "
            "through Playwright (never `playwright install`). Install it with: "
            "`sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu), "
            "then rerun the tests.",
            pytrace=False,
        )


@dataclass
class Served:
    """A built site served on 127.0.0.1."""

    root: Path
    base: str
    kb: kbtool.KnowledgeBase


@dataclass
class Watch:
    """Console errors, page errors, dialogs and off-host requests seen by one page."""

    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _serve(root: Path, kb: kbtool.KnowledgeBase) -> Iterator[Served]:
    server = start_server(root, 0)
    try:
        yield Served(root, f"http://127.0.0.1:{server.server_address[1]}/", kb)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_chromium()  # before the build: fail fast with the install hint
    out = tmp_path_factory.mktemp("browser-real") / "site"
    kb = kbtool.load()  # one snapshot for the build and the expectations
    build_site(kb, out, benchmark_json=None, zoo_dir=None)
    yield from _serve(out, kb)


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_chromium()
    out = tmp_path_factory.mktemp("browser-fixture") / "site"
    kb = kbtool.load(FIXTURE)
    build_site(kb, out, benchmark_json=None, zoo_dir=None)
    yield from _serve(out, kb)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    watch = Watch()
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "file://", "data:", "blob:", "about:")):
            route.continue_()
        else:
            watch.external.append(url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: watch.errors.append(str(e)))

    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg, watch
    context.close()


def _shot(pg: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def _search(pg: Page, query: str) -> Locator:
    """Type ``query`` into the theme's search box once its index is ready; return the results."""
    box = pg.locator("input.md-search__input")
    box.click()
    meta = pg.locator(".md-search-result__meta")
    # The theme says "Initializing search" until its worker has loaded the index.
    pg.wait_for_function(
        "() => { const m = document.querySelector('.md-search-result__meta');"
        " return m && !/initializ/i.test(m.textContent); }",
        timeout=20_000,
    )
    assert meta.count() == 1
    box.press_sequentially(query, delay=20)  # the theme reacts to key events, not to fill()
    results = pg.locator(".md-search-result__item")
    results.first.wait_for(timeout=15_000)
    return results


def _clean(watch: Watch) -> None:
    assert watch.errors == [], watch.errors
    assert watch.external == [], watch.external
    assert watch.dialogs == [], watch.dialogs


def test_home_page_loads_offline_without_errors(real: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(real.base + "index.html")
    pg.wait_for_load_state("networkidle")
    assert pg.locator("article h1").first.inner_text() == "KD Atlas"
    stats = pg.locator(".kb-stat-grid li").first.inner_text()
    assert stats.split()[0] == str(len(real.kb.papers))
    _shot(pg, "home", full_page=False)
    _clean(watch)


def test_search_finds_minillm(real: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(real.base + "index.html")
    results = _search(pg, "MiniLLM")
    titles = " ".join(results.all_inner_texts())
    assert "MiniLLM" in titles
    links = pg.locator(".md-search-result__item a").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    assert any("minillm" in (href or "").lower() for href in links), links
    _shot(pg, "search-minillm", full_page=False)
    _clean(watch)


def test_node_page_lists_its_papers(real: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    node = (
        "medical-healthcare" if "medical-healthcare" in real.kb.nodes else next(iter(real.kb.nodes))
    )
    expected = {p.title for p in real.kb.papers_under(node)}
    assert expected, "the chosen node should have papers"
    pg.goto(real.base + f"taxonomy/{node}.html")
    titles = pg.locator("#kb-node-papers tbody tr td:first-child").all_inner_texts()
    assert {t.strip() for t in titles} == expected
    # Sorting by year puts the oldest first after one click.
    pg.locator("#kb-node-papers thead button", has_text="Year").click()
    years = [
        int(y) for y in pg.locator("#kb-node-papers tbody tr td:nth-child(2)").all_inner_texts()
    ]
    assert years == sorted(years)
    _shot(pg, "node-page")
    _clean(watch)


def test_paper_filter_narrows_by_year(real: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    years = sorted({p.year for p in real.kb.papers.values()})
    year = max(years[:-1] or years)  # the second-newest year: not the whole table
    expected = {p.title for p in real.kb.papers.values() if p.year == year}
    pg.goto(real.base + "papers.html")
    rows = pg.locator("#kb-paper-index tbody tr:visible")
    assert rows.count() == len(real.kb.papers)
    pg.select_option("#kb-paper-filters select[name=year]", str(year))
    shown = {
        t.strip()
        for t in pg.locator("#kb-paper-index tbody tr:visible td:first-child").all_inner_texts()
    }
    assert shown == expected
    count = pg.locator("#kb-paper-count").inner_text()
    assert count == f"{len(expected)} of {len(real.kb.papers)} papers"
    # Has-code narrows further, to exactly the papers of that year with code.
    pg.check("#kb-paper-filters input[name=code]")
    with_code = {p.title for p in real.kb.papers.values() if p.year == year and p.has_code}
    shown = {
        t.strip()
        for t in pg.locator("#kb-paper-index tbody tr:visible td:first-child").all_inner_texts()
    }
    assert shown == with_code
    _shot(pg, "paper-filter-year", full_page=False)
    _clean(watch)


def test_method_page_shows_rendered_math_and_code(real: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    method = (
        "minillm"
        if "minillm" in real.kb.methods
        else next(m for m, v in real.kb.methods.items() if v.loss)
    )
    loss = real.kb.methods[method].loss
    assert loss is not None
    pg.goto(real.base + f"methods/{method}.html")
    math = pg.locator(".kb-formula math").first
    box = math.bounding_box()
    assert box is not None and box["height"] > 15 and box["width"] > 50
    # Laid out as MathML (a fraction or script has its own box), not as one line of raw text.
    display = math.evaluate("e => getComputedStyle(e).display")
    assert "math" in display
    assert "\\" not in math.evaluate("e => e.textContent")
    code = pg.locator("td.code code").first.inner_text()
    assert f"def {loss.rsplit('.', 1)[1]}(" in code
    _shot(pg, "method-page")
    _clean(watch)


def test_hostile_title_is_displayed_as_text(fixture_site: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(fixture_site.base + "papers/hostile-2024-title.html")
    pg.wait_for_load_state("networkidle")
    assert pg.locator("article h1").first.inner_text() == HOSTILE_TITLE
    assert pg.title() == f"{HOSTILE_TITLE} - KD Atlas"
    assert pg.locator("img[src=x]").count() == 0
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    # The index and search show it as text as well.
    pg.goto(fixture_site.base + "papers.html")
    assert pg.locator("#kb-paper-index a", has_text=HOSTILE_TITLE).count() == 1
    results = _search(pg, "Findings")  # the hostile paper's venue
    assert HOSTILE_TITLE in " ".join(results.all_inner_texts())
    assert pg.locator(".md-search-result img[src=x]").count() == 0
    _shot(pg, "hostile-title", full_page=False)
    _clean(watch)


def test_site_works_from_file_urls(
    fixture_site: Served, page: tuple[Page, Watch], tmp_path: Path
) -> None:
    pg, watch = page
    copy = tmp_path / "site"
    shutil.copytree(fixture_site.root, copy)
    pg.goto((copy / "index.html").as_uri())
    pg.locator("a", has_text="Papers").first.click()
    assert pg.url.endswith("/papers.html")
    results = _search(pg, "MiniLLM")
    assert "MiniLLM" in " ".join(results.all_inner_texts())
    _clean(watch)
