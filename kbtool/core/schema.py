"""JSON Schema export of the stored records, so editors can check contributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kbtool.core.atomic import write_text_atomic
from kbtool.core.model import MethodFile, Paper, Taxonomy

SCHEMAS: dict[str, type[Paper] | type[MethodFile] | type[Taxonomy]] = {
    "paper": Paper,
    "methods": MethodFile,
    "taxonomy": Taxonomy,
}


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record kind: paper, methods or taxonomy."""
    schema = SCHEMAS[name].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<kind>.schema.json`` for every record kind; return the paths written."""
    paths = []
    for name in SCHEMAS:
        path = out_dir / f"{name}.schema.json"
        write_text_atomic(path, json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
