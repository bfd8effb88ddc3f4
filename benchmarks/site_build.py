"""Time the site build at the real size and at 10,000 synthetic papers: a full build and the
rebuild after editing one paper file, each next to its target and its floor.

Usage: ``python benchmarks/site_build.py [--papers 10000] [--repeat 3] [--full-repeat 1]
[--skip-real] [--skip-synthetic]``. Every build goes to a temporary directory (the bundled
knowledge base is copied there too, so nothing in the checkout changes).

Targets on the 2-core reference machine: full build < 60 s, rebuild after one edit < 5 s
(``kbtool.load`` with its cache plus ``build_site(incremental=True)``, i.e. what ``kbtool
serve`` does). Floor: copying the built site, the bytes any build has to write. Figures are
medians; prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from kb_scale import make_kb

import kbtool
from kbtool.site import build_site

REPO = Path(__file__).resolve().parent.parent
FULL_TARGET_S = 60.0
REBUILD_TARGET_S = 5.0


def _edit_one_paper(root: Path, run: int) -> None:
    """Change the title of one paper file (a different one each run)."""
    papers = sorted((root / "papers").glob("*.yaml"))
    path = papers[(run + 1) * len(papers) // 5]
    data = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)  # noqa: S506 - safe loader
    data["title"] = f"Edited ({run}): {data['title']}"
    path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True))


def measure(label: str, root: Path, work: Path, repeat: int, full_repeat: int) -> None:
    """Full builds (each with an empty page cache), then one-edit rebuilds, of ``root``."""
    out, cache = work / "site", work / "cache"
    full, renders, mkdocs = [], [], []
    for _ in range(full_repeat):
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        result = build_site(kbtool.load(root), out, cache_dir=cache)
        full.append(time.perf_counter() - started)
        renders.append(result.render_seconds)
        mkdocs.append(result.mkdocs_seconds)
    pages = sum(result.pages.values())
    rebuilds, parts = [], []
    for run in range(repeat):
        _edit_one_paper(root, run)
        os.sync()  # the full builds' writes are flushed before, not during, the timed rebuild
        started = time.perf_counter()
        kb = kbtool.load(root)
        loaded = time.perf_counter() - started
        result = build_site(kb, out, cache_dir=cache, incremental=True)
        rebuilds.append(time.perf_counter() - started)
        parts.append((loaded, result.render_seconds, result.mkdocs_seconds))
        del kb
    # The floor last: the copy's writes would otherwise still be flushing during the rebuilds.
    os.sync()
    started = time.perf_counter()
    shutil.copytree(out, work / "floor")
    floor = time.perf_counter() - started
    shutil.rmtree(work / "floor")
    med = statistics.median
    print(f"[{label}] {pages} pages; floor (copying the built site): {floor:.2f} s")
    print(
        f"[{label}] full build: {med(full):.1f} s (render {med(renders):.1f} s, mkdocs "
        f"{med(mkdocs):.1f} s) = {med(full) / floor:.0f} x the floor "
        f"(target < {FULL_TARGET_S:.0f} s)"
    )
    load_s, render_s, mkdocs_s = (med(p[i] for p in parts) for i in range(3))
    print(
        f"[{label}] rebuild after editing one paper: {med(rebuilds):.2f} s (load {load_s:.2f} s, "
        f"render {render_s:.2f} s, mkdocs {mkdocs_s:.2f} s) = {med(rebuilds) / floor:.1f} x the "
        f"floor (target < {REBUILD_TARGET_S:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="one-edit rebuilds")
    parser.add_argument("--full-repeat", type=int, default=3, help="full builds")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_real:
            real = work / "real-kb"
            shutil.copytree(REPO / "taxonomy", real / "taxonomy")
            shutil.copytree(REPO / "papers", real / "papers")
            measure("real size", real, work / "real", args.repeat, args.full_repeat)
        if not args.skip_synthetic:
            synthetic = work / "synthetic-kb"
            synthetic.mkdir()
            make_kb(synthetic, args.papers)
            label = f"{args.papers} synthetic papers"
            measure(label, synthetic, work / "synthetic", args.repeat, args.full_repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
