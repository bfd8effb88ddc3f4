"""Validation of YAML data against the model, with problems named by file and field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kbtool.core.errors import Problem, validation_message
from kbtool.core.model import VOCABULARY_CONTEXT
from kbtool.core.taxonomy import TaxonomyUnavailableError, Vocabulary, bundled_vocabulary

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]" if parts else f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(file)"


def validate(
    model: type[M], data: Any, rel: str, prefix: str = ""
) -> tuple[M | None, list[Problem]]:  # noqa: ANN401
    try:
        return model.model_validate(data, context=context()), []
    except ValidationError as exc:
        problems = [
            Problem(rel, field_path(tuple(err["loc"]), prefix), validation_message(err))
            for err in exc.errors(include_url=False)
        ]
        return None, problems


def context() -> dict[str, Vocabulary] | None:
    """The validation context: the bundled vocabulary, read once rather than per paper (None
    when it cannot be read, so that each paper using it reports why)."""
    try:
        return {VOCABULARY_CONTEXT: bundled_vocabulary()}
    except TaxonomyUnavailableError:
        return None
