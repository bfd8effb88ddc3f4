"""Reading and writing paper files: validated construction, stable field order, atomic writes.

Ids are made in :mod:`kbtool.ingest.paper_ids`, titles compared in :mod:`kbtool.ingest.titles`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.core.atomic import write_text_atomic
from kbtool.core.errors import KnowledgeBaseError, Problem, validation_message
from kbtool.core.model import Paper
from kbtool.core.safe_yaml import dump_yaml


def build_paper(where: str, **data: Any) -> Paper:  # noqa: ANN401
    """A validated Paper; invalid source values become KnowledgeBaseError problems that name
    the source entry (``where``, e.g. ``list.md:line 12``) and the field."""
    try:
        return Paper.model_validate(data)
    except ValidationError as exc:
        raise KnowledgeBaseError(
            [
                Problem(
                    where,
                    ".".join(str(x) for x in e["loc"]) or "(entry)",
                    validation_message(e),
                )
                for e in exc.errors(include_url=False)
            ]
        ) from exc


def paper_to_data(paper: Paper) -> dict[str, Any]:
    """Plain data of a paper in model field order, without empty provenance entries."""
    data = paper.model_dump(mode="json")
    data["source"] = {k: v for k, v in data["source"].items() if v not in (None, [], {})}
    for row in data["source"].get("summary_table", []):
        if not row.get("printed"):
            row.pop("printed", None)
    data["placements"] = [
        {k: v for k, v in row.items() if v not in (None, [])} for row in data["placements"]
    ]
    return data


def paper_path(root: Path, paper_id: str) -> Path:
    """Where a paper's YAML file lives."""
    return root / "papers" / f"{paper_id}.yaml"


def write_paper(root: Path, paper: Paper) -> bool:
    """Write ``paper`` atomically; return True when the file changed."""
    path = paper_path(root, paper.id)
    text = dump_yaml(paper_to_data(paper))
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True
