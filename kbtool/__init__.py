"""KD Atlas: a typed knowledge base of knowledge distillation of large language models.

Quick start::

    import kbtool
    kb = kbtool.load()                       # the bundled knowledge base
    kb.query(node="medical-healthcare", year_min=2023, has_code=True)
    kb.methods_where(teacher_access="black-box")

This package imports neither torch nor mkdocs nor the CLI, so ``import kbtool`` stays fast.
"""

from kbtool.core.errors import KnowledgeBaseError, Problem
from kbtool.core.knowledge_base import KnowledgeBase, load
from kbtool.core.model import Method, Paper, TaxonomyNode

__all__ = [
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Method",
    "Paper",
    "Problem",
    "TaxonomyNode",
    "load",
]
__version__ = "0.1.0"
