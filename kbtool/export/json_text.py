"""Indented JSON text of plain data, as ``json.dumps(data, indent=2, ensure_ascii=False)``
writes it, but serialised in Rust by pydantic-core: the site's downloads hold every paper,
and the standard library's indenting encoder is pure Python (several times slower)."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core


def dumps_indented(data: Any) -> str:  # noqa: ANN401 - plain JSON data
    """``data`` as JSON indented by two spaces, non-ASCII kept, plus a final newline.

    For strings, integers, booleans, None, lists and string-keyed dicts, pydantic-core and
    the standard library write the same bytes (a property test checks this); the exports hold
    nothing else, since no field of the model is a float (a test checks that too: the two
    spell some floats differently). What pydantic-core refuses (a lone surrogate) is written
    by the standard library.
    """
    try:
        return pydantic_core.to_json(data, indent=2).decode("utf-8") + "\n"
    except (pydantic_core.PydanticSerializationError, UnicodeDecodeError):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
