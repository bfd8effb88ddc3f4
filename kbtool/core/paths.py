"""Where a knowledge base and its files live: the bundled checkout or ``$KBTOOL_ROOT``."""

from __future__ import annotations

import functools
import os
from pathlib import Path

NODES_FILE = Path("taxonomy") / "nodes.yaml"
METHODS_DIR = Path("taxonomy") / "methods"
PAPERS_DIR = Path("papers")
ROOT_ENV = "KBTOOL_ROOT"


def default_root() -> Path:
    """The bundled knowledge base: $KBTOOL_ROOT, else the checkout this package lives in."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env)
    return _checkout_root()


@functools.cache
def _checkout_root() -> Path:
    # Resolved once: validation asks for the bundled taxonomy once per paper.
    return Path(__file__).resolve().parent.parent.parent
