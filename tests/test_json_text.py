"""The fast indented JSON writer: the same bytes as the standard library's for every kind of
data the exports hold, the standard library's text where pydantic-core refuses, and no float
field anywhere in the model (where the two writers would differ)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kbtool.core.model import Method, Paper, TaxonomyNode
from kbtool.export.json_text import dumps_indented

plain = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


def standard(data: Any) -> str:  # noqa: ANN401
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@settings(max_examples=400)
@given(plain)
def test_same_text_as_the_standard_library(data: Any) -> None:  # noqa: ANN401
    assert dumps_indented(data) == standard(data)


def test_control_characters_quotes_and_non_ascii() -> None:
    data = {"title": 'Ünïcode "quoted" \\ back\tslash\n\x00\x1f\x7f \u2028 😀', "n": [], "d": {}}
    assert dumps_indented(data) == standard(data)


def test_a_lone_surrogate_falls_back_to_the_standard_library() -> None:
    data = {"title": "broken \ud800 half"}
    assert dumps_indented(data) == standard(data)


def _types(schema: Any) -> set[str]:  # noqa: ANN401
    """Every JSON Schema type named anywhere in ``schema``."""
    found: set[str] = set()
    if isinstance(schema, dict):
        kind = schema.get("type")
        found |= {kind} if isinstance(kind, str) else set(kind or [])
        for value in schema.values():
            found |= _types(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _types(value)
    return found


def test_no_field_of_the_model_is_a_float() -> None:
    for model in (Paper, Method, TaxonomyNode):
        types = _types(model.model_json_schema())
        assert {"string", "object"} <= types  # the walk does reach the fields
        assert "number" not in types, f"{model.__name__} has a float field"
