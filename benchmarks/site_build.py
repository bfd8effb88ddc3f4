"""Time the build of the real KD Atlas site (target: under 60 s on the project machine).

Usage: ``python benchmarks/site_build.py [--root DIR] [--out DIR] [--repeat N]``. By default
the site is built into a temporary directory so that ``build/site`` is left alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kbtool
from kbtool.site import build_site

TARGET_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    """Build the site ``--repeat`` times and print the timings; exit 1 when over the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="knowledge base (default: bundled)")
    parser.add_argument("--out", type=Path, default=None, help="output (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    kb = kbtool.load(args.root)
    load_seconds = time.perf_counter() - started
    print(
        f"knowledge base: {len(kb.papers)} papers, {len(kb.nodes)} nodes, "
        f"{len(kb.methods)} methods (loaded in {load_seconds:.2f} s)"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out if args.out is not None else Path(tmp) / "site"
        for run in range(1, args.repeat + 1):
            started = time.perf_counter()
            result = build_site(kb, out)
            total = time.perf_counter() - started
            worst = max(worst, total)
            pages = ", ".join(f"{n} {kind}" for kind, n in sorted(result.pages.items()))
            print(
                f"run {run}: {total:.2f} s total (render {result.render_seconds:.2f} s, "
                f"mkdocs build --strict {result.mkdocs_seconds:.2f} s); pages: {pages}"
            )
    verdict = "within" if worst < TARGET_SECONDS else "OVER"
    print(f"site build: {worst:.2f} s, {verdict} the {TARGET_SECONDS:.0f} s target")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
