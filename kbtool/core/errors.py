"""Problems found in the knowledge base data, reported as ``file: field: message``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one file of the knowledge base."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class KnowledgeBaseError(Exception):
    """Raised when the knowledge base cannot be loaded; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        suffix = f"\n... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the knowledge base:\n{shown}{suffix}")


#: Our wording for the validation errors people meet in hand-edited YAML, by pydantic error
#: type, so messages do not change when pydantic rewords its own.
_VALIDATION_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (not in the schema; check its spelling)",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a text string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of fields",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "date_type": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "url_parsing": "must be a URL",
    "url_type": "must be a URL",
}


def validation_message(error: Mapping[str, Any]) -> str:
    """Our message for one pydantic error: our validators' own text, our wording for common
    types, the allowed values for enumerations; pydantic's text only as a last resort."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in ("literal_error", "enum") and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    if kind in _VALIDATION_MESSAGES:
        return _VALIDATION_MESSAGES[kind]
    return str(error.get("msg", "invalid value"))
