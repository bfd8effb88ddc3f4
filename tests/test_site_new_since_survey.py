"""Issue 14 on the site: the "New since the survey" page, its monthly timeline, extension nodes
marked as ours, the basis of each placement and venue years on paper pages, the index filters.

Built from tests/post_survey_kb.py (kb_small plus three post-survey papers and one extension
node); the browser tests drive Debian's Chromium like tests/test_site_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from post_survey_kb import EXTENSION, NEW_IDS, build_post_survey_kb
from test_site_browser import Served, Watch, _clean, _require_chromium, _shot
from test_site_browser import browser as browser  # the module-scoped Chromium fixture

import kbtool
from kbtool.site import build_site, start_server
from kbtool.site.plots import monthly_timeline

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, kbtool.KnowledgeBase]]:
    base = tmp_path_factory.mktemp("post-survey-site")
    kb = kbtool.load(build_post_survey_kb(base / "kb"))
    build_site(kb, base / "site", benchmark_json=None, zoo_dir=None)
    yield base / "site", kb


# --- static checks -------------------------------------------------------------------------
def test_timeline_svg_counts_papers_per_month(built: tuple[Path, kbtool.KnowledgeBase]) -> None:
    svg = (built[0] / "new-since-survey" / "timeline.svg").read_text(encoding="utf-8")
    tips = re.findall(r"<rect [^>]*><title>([^<]*)</title>", svg)
    assert sorted(tips) == [
        "2024-03, KD Algorithms: 1",
        "2025-06, On-Policy Distillation: 1",
        "2026-01, On-Policy Distillation: 1",
    ]
    # 2024-03 .. 2026-01 is 23 months; the axis labels every quarter
    labels = re.findall(r'font-size="11">(\d{4}-\d{2})</text>', svg)
    # (2024-03 is not labelled: 2024-04's label is one column away)
    assert labels[:2] == ["2024-04", "2024-07"] and "2025-01" in labels
    assert "2025-02" not in labels


def test_monthly_timeline_labels_quarters_and_keeps_every_month_in_tooltips() -> None:
    months = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]
    svg = monthly_timeline("T", months, [("A", [1, 0, 2, 0, 0, 3])])
    assert re.findall(r'font-size="11">([^<]+)</text>', svg) == ["2025-11", "2026-01", "2026-04"]
    assert "<title>2026-04, A: 3</title>" in svg


# --- in the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(built: tuple[Path, kbtool.KnowledgeBase]) -> Iterator[Served]:
    _require_chromium()
    server = start_server(built[0], 0)
    try:
        yield Served(built[0], f"http://127.0.0.1:{server.server_address[1]}/", built[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    watch = Watch()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("http://127.0.0.1:")
            else (watch.external.append(route.request.url), route.abort())[1]
        ),
    )
    pg = context.new_page()
    pg.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: watch.errors.append(str(e)))
    yield pg, watch
    context.close()


@pytest.mark.browser
def test_new_page_lists_new_papers_newest_first_with_the_timeline(
    served: Served, page: tuple[Page, Watch]
) -> None:
    pg, watch = page
    pg.goto(served.base + "index.html")
    pg.locator("nav a", has_text="New since the survey").first.click()
    pg.wait_for_load_state("networkidle")
    assert pg.url.endswith("new-since-survey.html")
    titles = pg.locator("#kb-new-papers tbody tr td:first-child").all_inner_texts()
    assert [t.strip() for t in titles] == [served.kb.papers[i].title for i in NEW_IDS]
    img = pg.locator(".kb-timeline img")
    assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    gained = {
        row.get_attribute("data-node"): row.locator("td").nth(1).inner_text()
        for row in pg.locator("#kb-gained tbody tr").all()
    }
    assert gained["kd-algorithms"] == "3"
    assert gained["distillation-algorithms"] == "2"  # lee (RL, extension) and kim (extension)
    assert gained["feedback"] == "1" and gained["medical-healthcare"] == "0"
    assert EXTENSION not in gained  # survey nodes only
    _shot(pg, "new-since-survey")
    _clean(watch)


@pytest.mark.browser
def test_extension_node_is_marked_and_explained(served: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(served.base + "taxonomy.html")
    item = pg.locator(".kb-tree li", has=pg.locator(f'a[href$="taxonomy/{EXTENSION}.html"]')).last
    assert item.locator(".kb-origin-kd-atlas").count() == 1
    assert pg.locator(".kb-tree .kb-origin-kd-atlas").count() == 1  # survey nodes unmarked
    legend = pg.locator(".kb-origin-legend").inner_text()
    assert "survey's own" in legend and "KD Atlas extensions" in legend
    pg.goto(served.base + f"taxonomy/{EXTENSION}.html")
    assert pg.locator("article h1 .kb-origin-kd-atlas").is_visible()
    assert "extension node of KD Atlas" in pg.locator(".kb-origin-note").inner_text()
    _clean(watch)


@pytest.mark.browser
def test_paper_page_shows_each_basis_and_the_venue_year(
    served: Served, page: tuple[Page, Watch]
) -> None:
    pg, watch = page
    pg.goto(served.base + "papers/lee2025onpolicy.html")
    assert pg.locator(".kb-venue").inner_text() == "ICLR 2026 (arXiv 2025-06)"
    ext = pg.locator(f'.kb-placements li[data-node="{EXTENSION}"]').inner_text()
    assert "crosswalk of a curated list" in ext
    assert "someone/awesome-opd: Papers > On-Policy" in ext
    rl = pg.locator('.kb-placements li[data-node="reinforcement-learning"]').inner_text()
    assert "reviewed by KD Atlas" in rl and "(reward model)" in rl
    pg.goto(served.base + "papers/gu2023minillm.html")
    assert pg.locator(".kb-venue").inner_text() == "ICLR 2024 (arXiv 2023-06)"
    assert "the survey's list" in pg.locator(".kb-placements li").first.inner_text()
    _shot(pg, "paper-basis", full_page=False)
    _clean(watch)


@pytest.mark.browser
def test_paper_index_filters_by_basis_and_origin(served: Served, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(served.base + "papers.html")
    visible = "#kb-paper-index tbody tr:visible td:first-child"
    pg.select_option("#kb-paper-filters select[name=basis]", "reviewed")
    shown = {t.strip() for t in pg.locator(visible).all_inner_texts()}
    kb = served.kb
    assert shown == {kb.papers["lee2025onpolicy"].title, kb.papers["agents2024distilling"].title}
    pg.select_option("#kb-paper-filters select[name=basis]", "")
    pg.select_option("#kb-paper-filters select[name=origin]", "kd-atlas")
    shown = {t.strip() for t in pg.locator(visible).all_inner_texts()}
    assert shown == {kb.papers["lee2025onpolicy"].title, kb.papers["kim2026self"].title}
    pg.goto(served.base + "index.html")
    numbers = pg.locator(".kb-stat-grid li").all_inner_texts()
    assert numbers[0].split()[0] == str(len(kb.papers)) == "9"
    assert "3 new since the survey" in [" ".join(n.split()) for n in numbers], numbers
    _clean(watch)
