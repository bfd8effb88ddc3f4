"""Build the static site from the real knowledge base and from a small fixture, and check it.

Checks: mkdocs --strict passes (and really is strict), page counts match the knowledge base,
every internal link resolves, nothing is loaded from another host, data is escaped, builds
are atomic and reproducible, formulas become MathML and reference code is included verbatim.
"""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import kbtool
from kbtool.site import SiteBuildError, build_site
from kbtool.site.benchmark import read_benchmark
from kbtool.site.mathml import latex_to_mathml, sanitize_mathml
from kbtool.site.plots import bar_chart, stacked_columns
from kbtool.site.render import SITE_SRC

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "site_kb"
HOSTILE_ID = "hostile-2024-title"
HOSTILE_TITLE = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"
FIXED_EPOCH = "1700000000"


# --- HTML inspection helpers (independent of the code under test) ------------------------------
class _Collector(HTMLParser):
    """Collects URL-bearing attributes, script bodies, ids and the <title> of one page."""

    URL_ATTRS = {"href", "src", "data", "action", "poster", "srcset", "formaction"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str, dict[str, str]]] = []  # (tag, attr, value, attrs)
        self.scripts: list[str] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        amap = {k: v or "" for k, v in attrs}
        for key, value in amap.items():
            if key in self.URL_ATTRS:
                self.urls.append((tag, key, value, amap))
        if tag in ("script", "title"):
            self._in = tag
            if tag == "script":
                self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "title":
            self.title += data


def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def _html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def _tree_bytes(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def epoch_env() -> Iterator[None]:
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = FIXED_EPOCH
    yield
    if old is None:
        del os.environ["SOURCE_DATE_EPOCH"]
    else:
        os.environ["SOURCE_DATE_EPOCH"] = old


@pytest.fixture(scope="module")
def benchmark_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "fused_loss.json"
    rows = [
        {
            "config": {"batch": 4, "vocab": 32000},
            "impl": "fused",
            "time_s": 0.0123456,
            "peak_mb": 512.0,
        },
        {
            "config": {"batch": 4, "vocab": 32000},
            "impl": "<b>naive</b>",
            "time_s": 0.05,
            "peak_mb": 2048,
        },
        "not a row",
    ]
    path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fixture_site(
    tmp_path_factory: pytest.TempPathFactory, epoch_env: None, benchmark_file: Path
) -> Path:
    out = tmp_path_factory.mktemp("fixture") / "site"
    result = build_site(FIXTURE, out, benchmark_json=benchmark_file, zoo_dir=None)
    assert result.out == out.resolve()
    return out


@pytest.fixture(scope="module")
def fixture_kb() -> kbtool.KnowledgeBase:
    return kbtool.load(FIXTURE)


@pytest.fixture(scope="module")
def real_kb() -> kbtool.KnowledgeBase:
    return kbtool.load()  # one snapshot for the build and the expectations


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory, real_kb: kbtool.KnowledgeBase) -> Path:
    out = tmp_path_factory.mktemp("real") / "site"
    build_site(real_kb, out, benchmark_json=None, zoo_dir=None)
    return out


# --- page counts, links, offline ------------------------------------------------------------
@pytest.mark.parametrize("which", ["fixture", "real"])
def test_page_counts_match_the_knowledge_base(which: str, request: pytest.FixtureRequest) -> None:
    site: Path = request.getfixturevalue(f"{which}_site")
    kb: kbtool.KnowledgeBase = request.getfixturevalue(f"{which}_kb")
    papers = {p.stem for p in (site / "papers").glob("*.html")}
    nodes = {p.stem for p in (site / "taxonomy").glob("*.html")}
    methods = {p.stem for p in (site / "methods").glob("*.html")}
    assert papers == set(kb.papers)
    assert nodes == set(kb.nodes)
    assert methods == set(kb.methods)
    for page in (
        "index",
        "taxonomy",
        "papers",
        "methods",
        "statistics",
        "downloads",
        "contributing",
    ):
        assert (site / f"{page}.html").is_file(), page
    node_bibs = {p.stem for p in (site / "downloads" / "nodes").glob("*.bib")}
    assert node_bibs == set(kb.nodes)
    contributing = re.sub(r"<[^>]+>", "", (site / "contributing.html").read_text(encoding="utf-8"))
    assert "kbtool suggest --title" in contributing and "kbtool validate" in contributing
    for name in ("kd-atlas.bib", "kd-atlas.csl.json", "kd-atlas.json"):
        assert (site / "downloads" / name).stat().st_size > 0
    csl = json.loads((site / "downloads" / "kd-atlas.csl.json").read_text(encoding="utf-8"))
    assert len(csl) == len(kb.papers)
    assert (site / "search" / "search_index.json").is_file()


@pytest.mark.parametrize("which", ["fixture", "real"])
def test_every_internal_link_resolves(which: str, request: pytest.FixtureRequest) -> None:
    site: Path = request.getfixturevalue(f"{which}_site")
    broken = []
    checked = 0
    for page in _html_files(site):
        for tag, attr, value, _ in _parse(page).urls:
            if attr == "srcset" or not value:
                continue
            parts = urlsplit(value)
            if parts.scheme or parts.netloc or value.startswith(("#", "mailto:")):
                continue
            # Root-relative links (only the 404 page has them) resolve against the served root.
            anchor = site if parts.path.startswith("/") else page.parent
            target = (anchor / unquote(parts.path).lstrip("/")).resolve()
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{page.relative_to(site)}: <{tag} {attr}={value!r}>")
    for css in (site / "kb-assets").rglob("*.css"):
        for ref in re.findall(r"url\(\s*['\"]?([^)'\"]+)", css.read_text(encoding="utf-8")):
            if not urlsplit(ref).scheme and not (css.parent / ref).is_file():
                broken.append(f"{css.relative_to(site)}: url({ref})")
    assert not broken, "\n".join(broken[:30])
    assert checked > 1000 if which == "real" else checked > 100


@pytest.mark.parametrize("which", ["fixture", "real"])
def test_nothing_is_loaded_from_another_host(which: str, request: pytest.FixtureRequest) -> None:
    site: Path = request.getfixturevalue(f"{which}_site")
    remote = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
    offending = []
    for page in _html_files(site):
        text = page.read_text(encoding="utf-8")
        for tag, attr, value, attrs in _parse(page).urls:
            if tag == "a" and attr == "href":
                continue  # links to papers, code and data are fine: the reader clicks them
            if remote.match(value.strip()):
                offending.append(f"{page.relative_to(site)}: <{tag} {attr}={value!r}> {attrs}")
        if "unpkg.com" in text or "fonts.googleapis" in text or "fonts.gstatic" in text:
            offending.append(f"{page.relative_to(site)}: mentions a CDN or font host")
    for asset in [*site.rglob("*.css"), *site.rglob("*.svg")]:
        for match in re.findall(r"url\(\s*['\"]?([^)'\"]+)", asset.read_text(encoding="utf-8")):
            if remote.match(match):
                offending.append(f"{asset.relative_to(site)}: url({match})")
        if re.search(r"@import\s+['\"]?(?:https?:)?//", asset.read_text(encoding="utf-8")):
            offending.append(f"{asset.relative_to(site)}: remote @import")
    assert not offending, "\n".join(offending[:30])


# --- escaping ---------------------------------------------------------------------------------
def test_hostile_strings_are_escaped_everywhere(fixture_site: Path) -> None:
    page = fixture_site / "papers" / f"{HOSTILE_ID}.html"
    text = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and &lt;img src=x onerror=alert(2)&gt;" in text
    assert _parse(page).title.startswith(HOSTILE_TITLE)  # the <title> text, decoded once
    for html_file in _html_files(fixture_site):
        content = html_file.read_text(encoding="utf-8")
        assert "<img src=x" not in content, html_file
        assert "<script>alert" not in content, html_file
        assert "</title><script>" not in content, html_file
        assert "<b>Mallory" not in content and "<em>Hostile" not in content, html_file
        for script in _parse(html_file).scripts:
            assert "alert(" not in script, html_file
    # The same number of <script> elements as a harmless paper page: nothing was injected.
    benign = fixture_site / "papers" / "gu-2023-minillm.html"
    assert text.count("<script") == benign.read_text(encoding="utf-8").count("<script")
    # A snippet marker in the data is shown, never executed as an include.
    assert re.search(r"--8&lt;-- (?:&#34;|&quot;|\")README\.md", text)
    assert "# KD Atlas" not in text


def test_hostile_formula_is_text_in_mathml(fixture_site: Path) -> None:
    text = (fixture_site / "methods" / "hostile-method.html").read_text(encoding="utf-8")
    assert "<mtext>&lt;script&gt;alert(4)&lt;/script&gt;</mtext>" in text
    assert "<script>alert(4)" not in text


# --- math and reference implementations --------------------------------------------------------
@pytest.mark.parametrize(
    ("latex", "expected"),
    [
        (
            r"\mathrm{KL}(p\,\|\,q_\theta)=\sum_y p(y)\log\frac{p(y)}{q_\theta(y)}",
            ["<mfrac>", "\u2211", "\u03b8"],
        ),
        (r"\beta", ["\u03b2"]),
        (r"\operatorname*{E}_{x\sim D}[f(x)]", ['<mo movablelimits="true">E</mo>', "\u223c"]),
        (r"\mathbb{E}_{y\sim q}", ["\U0001d53c", "<msub>"]),
        (r"\sigma(z)", ["\u03c3"]),
        (r"\log p", ['<mo lspace="0.1667em" rspace="0.1667em">log</mo>']),
        (r"\sum_{t'>t} r_{t'}", ["\u2211", "\u2032", "&gt;"]),
    ],
)
def test_formulas_become_mathml(latex: str, expected: list[str]) -> None:
    out = latex_to_mathml(latex)
    assert out.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">')
    for fragment in expected:
        assert fragment in out, (latex, fragment, out)
    ET.fromstring(out)  # well-formed XML


def test_mathml_sanitizer_drops_foreign_markup() -> None:
    dirty = '<math><mi onclick="x()">a</mi><script>alert(1)</script><img src=x onerror=y></math>'
    clean = sanitize_mathml(dirty)
    assert (
        clean
        == "<math><mi>a</mi>&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=y&gt;</math>"
    )


def test_method_page_has_mathml_and_the_source_lines(fixture_site: Path) -> None:
    text = (fixture_site / "methods" / "forward-kl.html").read_text(encoding="utf-8")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in text
    assert "$" not in re.sub(r"<pre>.*?</pre>", "", text, flags=re.S).split("md-content")[1]
    source = (REPO / "reference_impls" / "kl.py").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(source) if line.startswith("def forward_kl(")) + 1
    end = next(
        (i for i in range(start, len(source)) if re.match(r"(def |class |@|[A-Za-z_])", source[i])),
        len(source),
    )
    while not source[end - 1].strip():
        end -= 1
    table = re.search(r'<table class="highlighttable">(.*?)</table>', text, flags=re.S)
    assert table is not None
    linenos = re.search(r'<td class="linenos">(.*?)</td>', table.group(1), flags=re.S)
    code = re.search(r'<td class="code">(.*?)</td>', table.group(1), flags=re.S)
    assert linenos is not None and code is not None
    numbers = [int(n) for n in re.findall(r">(\d+)<", linenos.group(1))]
    assert numbers == list(range(start, end + 1))
    shown = html_module.unescape(re.sub(r"<[^>]+>", "", code.group(1)))
    assert shown.rstrip("\n").split("\n") == source[start - 1 : end]


def test_method_page_lists_papers_and_related_methods(fixture_site: Path) -> None:
    text = (fixture_site / "methods" / "minillm.html").read_text(encoding="utf-8")
    assert 'href="../papers/gu-2023-minillm.html"' in text
    assert "Generalizes" in text and 'href="../methods/reverse-kl.html"' in text
    assert "kbtool run minillm" in text
    assert "python -m reference_impls.demos minillm_loss" in text
    reverse = (fixture_site / "methods" / "reverse-kl.html").read_text(encoding="utf-8")
    assert "Special case of" in reverse and 'href="../methods/minillm.html"' in reverse


def test_method_pages_show_utilities_and_scenario_demos(real_site: Path) -> None:
    """Utilities' code is included from their files; a method's demo replaces its loss's."""
    speculative = (real_site / "methods" / "speculative-kd.html").read_text(encoding="utf-8")
    assert "python -m reference_impls.demos speculative_kd --loss forward_kl" in speculative
    assert "python -m reference_impls.demos forward_kl" not in speculative
    assert "def speculative_kd_sample(" in html_module.unescape(re.sub(r"<[^>]+>", "", speculative))
    miniplm = (real_site / "methods" / "miniplm.html").read_text(encoding="utf-8")
    shown = html_module.unescape(re.sub(r"<[^>]+>", "", miniplm))
    assert "def difference_scores(" in shown and "def select_by_difference(" in shown
    assert "python -m reference_impls.demos difference_sampling" in shown
    assert "no loss function of its own" in shown and "Train with Hugging Face" not in shown
    taid = html_module.unescape(
        re.sub(r"<[^>]+>", "", (real_site / "methods" / "taid.html").read_text(encoding="utf-8"))
    )
    assert "class TAIDSchedule" in taid and "def taid_loss(" in taid


def test_node_page_lists_the_papers_under_it(
    fixture_site: Path, fixture_kb: kbtool.KnowledgeBase
) -> None:
    text = (fixture_site / "taxonomy" / "knowledge-elicitation.html").read_text(encoding="utf-8")
    table = text.split('id="kb-node-papers"')[1].split("</table>")[0]
    linked = set(re.findall(r'href="\.\./papers/([a-z0-9_-]+)\.html"', table))
    assert linked == {"hostile-2024-title", "li-2024-meditron", "rafailov-2023-dpo"}
    assert linked == {p.id for p in fixture_kb.papers_under("knowledge-elicitation")}


def test_paper_index_rows_carry_filter_facets(fixture_site: Path) -> None:
    text = (fixture_site / "papers.html").read_text(encoding="utf-8")
    row = re.search(r'<tr data-year="2023"[^>]*data-teachers="gpt-2\|llama\|opt"[^>]*>', text)
    assert row is not None
    assert (
        'data-nodes="distillation-algorithm divergence-and-similarity kd-algorithms '
        in row.group(0)
    )
    assert 'data-code="yes"' in row.group(0)


# --- statistics ----------------------------------------------------------------------------------
def test_statistics_page_has_plots_and_benchmark_table(fixture_site: Path) -> None:
    text = (fixture_site / "statistics.html").read_text(encoding="utf-8")
    svgs = sorted(p.name for p in (fixture_site / "statistics").glob("*.svg"))
    assert svgs == sorted(
        [
            "papers-per-year.svg",
            "papers-per-node.svg",
            "teachers.svg",
            "objectives.svg",
            "elicitation.svg",
            "code-availability.svg",
        ]
    )
    for svg in svgs:
        root = ET.parse(fixture_site / "statistics" / svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    teachers = (fixture_site / "statistics" / "teachers.svg").read_text(encoding="utf-8")
    assert "GPT-4 &lt;i&gt;turbo&lt;/i&gt;" in teachers
    assert "<td>config.batch</td>" not in text and '<th scope="col">config.batch</th>' in text
    assert "<td>0.01235</td>" in text and "<td>&lt;b&gt;naive&lt;/b&gt;</td>" in text


def test_read_benchmark_is_defensive(tmp_path: Path) -> None:
    assert read_benchmark(tmp_path / "missing.json")["rows"] == []
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert "could not be read" in read_benchmark(bad)["message"]
    bad.write_text('{"rows": 3}', encoding="utf-8")
    assert read_benchmark(bad)["rows"] == []
    bad.write_text('[1, 2, "x"]', encoding="utf-8")
    assert read_benchmark(bad)["rows"] == []
    good = tmp_path / "good.json"
    good.write_text('[{"a": 1.23456789, "b": {"c": true}}, {"d": null}]', encoding="utf-8")
    result = read_benchmark(good)
    assert result["columns"] == ["a", "b.c", "d"]
    assert result["rows"] == [{"a": "1.235", "b.c": "true"}, {"d": ""}]


def test_plots_escape_labels_and_scale_bars() -> None:
    svg = bar_chart("T <&>", [("a<b", 10), ("c", 5)])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    widths = [
        float(r.get("width", 0)) for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None
    ]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert "a&lt;b" in svg
    columns = stacked_columns("Y", ["2023", "2024"], [("x", [1, 2]), ("y", [3, 0])])
    ET.fromstring(columns)
    assert columns.count("<rect x=") == 3 + 2  # three non-zero segments, two legend boxes


# --- strictness, atomicity, reproducibility, import hygiene --------------------------------
def test_strict_mode_fails_and_leaves_the_old_site(tmp_path: Path) -> None:
    src = tmp_path / "site-src"
    shutil.copytree(SITE_SRC, src)
    template = src / "templates" / "downloads.md.j2"
    template.write_text(
        template.read_text(encoding="utf-8")
        + "\n\nSee [a page that does not exist](nowhere.md).\n",
        encoding="utf-8",
    )
    out = tmp_path / "site"
    out.mkdir()
    (out / "marker.txt").write_text("previous build", encoding="utf-8")
    with pytest.raises(SiteBuildError, match="nowhere.md"):
        build_site(FIXTURE, out, site_src=src, benchmark_json=None, zoo_dir=None)
    assert (out / "marker.txt").read_text(encoding="utf-8") == "previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "site-src"]  # no temp left


def test_build_is_reproducible_and_replaces_the_old_site(
    tmp_path: Path, fixture_site: Path, epoch_env: None, benchmark_file: Path
) -> None:
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.html").write_text("old", encoding="utf-8")
    build_site(FIXTURE, out, benchmark_json=benchmark_file, zoo_dir=None)
    assert not (out / "stale.html").exists()
    first, second = _tree_bytes(fixture_site), _tree_bytes(out)
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_rendering_imports_neither_torch_nor_mkdocs(tmp_path: Path) -> None:
    code = (
        "import sys, kbtool\n"
        "from kbtool.site.render import render_docs\n"
        "from pathlib import Path\n"
        f"render_docs(kbtool.load({str(FIXTURE)!r}), Path({str(tmp_path / 'docs')!r}))\n"
        "bad = [m for m in ('torch', 'mkdocs', 'material') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "docs" / "papers" / f"{HOSTILE_ID}.md").is_file()


# --- Hugging Face page and trainer calls ----------------------------------------------------
def test_huggingface_page_and_trainer_call_on_method_pages(real_site: Path) -> None:
    """The 'Use with Hugging Face / TRL' page is built and in the nav; a method whose loss the
    trainer feeds shows the trainer call and the --hf run; one it cannot feed says so."""
    page = (real_site / "huggingface.html").read_text(encoding="utf-8")
    assert "DistillationTrainer" in page and "accelerate launch" in page
    assert 'href="huggingface.html"' in (real_site / "index.html").read_text(encoding="utf-8")
    forward = html_module.unescape((real_site / "methods" / "forward-kl.html").read_text("utf-8"))
    assert 'loss="forward_kl"' in re.sub(r"<[^>]+>", "", forward)
    assert "kbtool run forward-kl --hf" in re.sub(r"<[^>]+>", "", forward)
    dpo = html_module.unescape((real_site / "methods" / "dpo-objective.html").read_text("utf-8"))
    assert "does not feed this loss" in dpo and "--hf" not in re.sub(r"<[^>]+>", "", dpo)


def test_site_knows_the_hyperparameters_of_the_registry(real_site: Path) -> None:
    """Read without torch, they equal the specs' literal params; snippets pass them."""
    from kbtool.site.refimpl import registry_params
    from reference_impls.registry import SPECS

    want = {n: dict(s.params) for n, s in SPECS.items() if s.params}
    assert registry_params() == want and want["taid_loss"] == {"t": 0.4}
    taid = html_module.unescape((real_site / "methods" / "taid.html").read_text(encoding="utf-8"))
    assert re.search(r'loss_params=\{"t": 0\.4\}', re.sub(r"<[^>]+>", "", taid))


def test_site_knows_the_trainer_kinds_of_the_registry() -> None:
    """The site reads the registry without torch; its view agrees with the trainer's own."""
    from kbtool.site.method_code import TRAINER_FEEDS
    from kbtool.site.refimpl import registry_kinds
    from reference_impls import SPECS
    from reference_impls.integrations.objective import TRAINER_KINDS

    assert registry_kinds() == {name: spec.kind.name for name, spec in SPECS.items()}
    assert {kind.name: feed for kind, feed in TRAINER_KINDS.items()} == TRAINER_FEEDS
