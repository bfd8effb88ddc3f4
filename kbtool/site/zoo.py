"""Loss-zoo results on the site: read ``build/zoo/zoo.json`` defensively and copy its plots.

The zoo (``python -m reference_impls.zoo``) is optional; when its output is missing or
malformed, pages say so instead of failing the build.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ZOO_DIR = Path("build") / "zoo"
#: Metrics shown per loss, in this order, with their column headings.
METRICS = (
    ("forward_kl", "KL(p‖q)"),
    ("reverse_kl", "KL(q‖p)"),
    ("entropy_ratio", "H(q)/H(p)"),
    ("hallucination_mass", "mass on p < 1e-3"),
    ("top1_agreement", "top-1 agreement"),
    ("mode_recall", "mode recall"),
    ("ms_per_step", "ms / step"),
)


@dataclass
class ZooView:
    """What the templates need: per-loss rows, claims, plot files, or a message."""

    message: str = ""
    rows: dict[str, list[str]] = field(default_factory=dict)
    claims: list[dict[str, str]] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""
    headings: list[str] = field(default_factory=lambda: [h for _, h in METRICS])


def _cell(mean: dict[str, Any], std: dict[str, Any], key: str) -> str:
    value, spread = mean.get(key), std.get(key)
    if not isinstance(value, int | float):
        return ""
    if isinstance(spread, int | float) and spread > 0:
        return f"{value:.3g} ± {spread:.2g}"
    return f"{value:.3g}"


def read_zoo(zoo_dir: Path | None, docs: Path, rel_dir: str = "statistics/zoo") -> ZooView:
    """Parse the zoo output and copy its SVG plots to ``docs/rel_dir``."""
    if zoo_dir is None or not (zoo_dir / "zoo.json").is_file():
        return ZooView(
            message="No loss-zoo results yet: run `python -m reference_impls.zoo` "
            "(or `kbtool zoo`), then rebuild the site."
        )
    try:
        data = json.loads((zoo_dir / "zoo.json").read_text(encoding="utf-8"))
        results: dict[str, Any] = data["results"]
        view = ZooView()
        for loss, result in results.items():
            mean, std = result.get("mean", {}), result.get("std", {})
            view.rows[str(loss)] = [_cell(mean, std, key) for key, _ in METRICS]
        for claim in data.get("claims", []):
            view.claims.append(
                {
                    "statement": str(claim.get("statement", "")),
                    "verdict": "reproduced" if claim.get("reproduced") else "not reproduced",
                    "seeds": f"{claim.get('seeds_agreeing', '?')}/{claim.get('n_seeds', '?')}",
                    "criterion": str(claim.get("criterion", "")),
                }
            )
        for title, name in (
            ("Metrics per loss", "table"),
            ("Forward vs reverse KL", "fkl_rkl"),
            ("Entropy ratio per loss", "entropy"),
        ):
            svg = zoo_dir / str(data.get("plots", {}).get(name, ""))
            if svg.is_file() and svg.suffix == ".svg":
                (docs / rel_dir).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(svg, docs / rel_dir / svg.name)
                view.plots.append((title, f"{rel_dir}/{svg.name}"))
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
    ) as exc:
        return ZooView(message=f"The loss-zoo results in {zoo_dir} could not be read: {exc}")
