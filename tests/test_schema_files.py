"""The committed JSON Schemas (taxonomy/schema/) match the pydantic model, so editors that
validate contributions against them agree with ``kbtool validate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbtool.core.safe_yaml import read_yaml
from kbtool.core.schema import SCHEMAS, schema_of

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "taxonomy" / "schema"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_is_current(name: str) -> None:
    committed = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    assert committed == schema_of(name), "run: kbtool schema --out taxonomy/schema"


def test_paper_schema_names_exactly_the_paper_fields() -> None:
    schema = schema_of("paper")
    assert list(schema["properties"]) == [
        "id",
        "title",
        "authors",
        "year",
        "month",
        "venue",
        "venue_year",
        "arxiv_id",
        "url",
        "code",
        "data",
        "nodes",
        "placements",
        "methods",
        "roles",
        "teachers",
        "students",
        "seed_knowledge",
        "skills",
        "elicitation",
        "objectives",
        "cited_by_survey",
        "source",
    ]
    assert schema["additionalProperties"] is False


def test_a_real_paper_file_has_only_schema_fields() -> None:
    data = read_yaml(Path(__file__).resolve().parent.parent / "papers" / "gu2023minillm.yaml")
    assert set(data) <= set(schema_of("paper")["properties"])
