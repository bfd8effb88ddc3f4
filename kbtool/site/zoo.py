"""Loss-zoo results on the site: read ``build/zoo/zoo.json`` defensively and draw its charts.

The zoo (``python -m reference_impls.zoo``) is optional and writes only ``zoo.json`` (schema:
``reference_impls/zoo/results.py``, which also lists the metric columns in the file); the
charts are drawn here by :mod:`kbtool.site.plots`. When the output is missing or malformed,
pages say so instead of failing the build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kbtool.site.plots import ZOO_CHARTS

if TYPE_CHECKING:  # types only: reading the schema must not import torch
    from reference_impls.zoo.results import ZooReport

DEFAULT_ZOO_DIR = Path("build") / "zoo"


@dataclass
class ZooView:
    """What the templates need: per-loss rows, claims, plot files, or a message."""

    message: str = ""
    rows: dict[str, list[str]] = field(default_factory=dict)
    claims: list[dict[str, str]] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""
    headings: list[str] = field(default_factory=list)


def _cell(mean: dict[str, Any], std: dict[str, Any], key: str) -> str:
    value, spread = mean.get(key), std.get(key)
    if not isinstance(value, int | float):
        return ""
    if isinstance(spread, int | float) and spread > 0:
        return f"{value:.3g} ± {spread:.2g}"
    return f"{value:.3g}"


def read_zoo(zoo_dir: Path | None, docs: Path, rel_dir: str = "statistics/zoo") -> ZooView:
    """Parse the zoo output and draw its charts into ``docs/rel_dir``."""
    if zoo_dir is None or not (zoo_dir / "zoo.json").is_file():
        return ZooView(
            message="No loss-zoo results yet: run `python -m reference_impls.zoo` "
            "(or `kbtool zoo`), then rebuild the site."
        )
    try:
        data = cast("ZooReport", json.loads((zoo_dir / "zoo.json").read_text(encoding="utf-8")))
        results = data["results"]
        columns = [c for c in data["columns"] if c["header"]]
        view = ZooView(headings=[c["header"] for c in columns])
        for loss, result in results.items():
            mean, std = result.get("mean", {}), result.get("std", {})
            view.rows[str(loss)] = [_cell(mean, std, c["key"]) for c in columns]
        for claim in data.get("claims", []):
            view.claims.append(
                {
                    "statement": str(claim.get("statement", "")),
                    "verdict": "reproduced" if claim.get("reproduced") else "not reproduced",
                    "seeds": f"{claim.get('seeds_agreeing', '?')}/{claim.get('n_seeds', '?')}",
                    "criterion": str(claim.get("criterion", "")),
                }
            )
        (docs / rel_dir).mkdir(parents=True, exist_ok=True)
        for name, title, draw in ZOO_CHARTS:
            (docs / rel_dir / name).write_text(draw(data), encoding="utf-8")
            view.plots.append((title, f"{rel_dir}/{name}"))
        config = data.get("config", {})
        view.summary = (
            f"{len(results)} losses × {len(data.get('seeds', []))} seeds, "
            f"{config.get('steps', '?')} steps each, on {data.get('device', '?')} in "
            f"{float(data.get('wall_seconds', 0.0)):.0f} s"
        )
        return view
    except (
        OSError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
        ArithmeticError,
    ) as exc:
        return ZooView(message=f"The loss-zoo results in {zoo_dir} could not be read: {exc}")
