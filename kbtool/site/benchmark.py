"""Read the fused-loss benchmark's JSON for the statistics page, defensively."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_BENCHMARK_ROWS = 500


def read_benchmark(path: Path | None) -> dict[str, Any]:
    """Rows of the fused-loss benchmark JSON, read defensively (any shape problem -> a message).

    Accepts a list of objects or an object with a ``rows``/``results`` list; nested objects are
    flattened one level (``config.batch``); floats are shown with four significant digits.
    """
    empty: dict[str, Any] = {"rows": [], "columns": [], "path": str(path) if path else ""}
    if path is None or not path.is_file():
        return {
            **empty,
            "message": "No fused-loss benchmark results yet (run the benchmark to "
            "write build/benchmarks/fused_loss.json, then rebuild the site).",
        }
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {**empty, "message": f"The benchmark file could not be read: {exc}"}
    if isinstance(data, dict):
        data = next((data[k] for k in ("rows", "results") if isinstance(data.get(k), list)), None)
    if not isinstance(data, list):
        return {**empty, "message": "The benchmark file holds no list of result rows."}
    rows: list[dict[str, str]] = []
    columns: dict[str, None] = {}
    for item in data[:MAX_BENCHMARK_ROWS]:
        if not isinstance(item, dict):
            continue
        row: dict[str, str] = {}
        for key, value in item.items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    row[f"{key}.{sub}"] = _cell(sub_value)
            else:
                row[str(key)] = _cell(value)
        columns.update(dict.fromkeys(row))
        rows.append(row)
    if not rows:
        return {**empty, "message": "The benchmark file holds no result rows."}
    return {"rows": rows, "columns": list(columns), "path": str(path), "message": ""}


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
