"""Problems found in the knowledge base data, reported as ``file: field: message``."""

from __future__ import annotations

from dataclasses import dataclass


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
