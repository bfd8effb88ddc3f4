"""Title keys and fuzzy title matching: how importers and triage recognise one paper spelt
two ways ('Consitutional AI' vs 'Constitutional AI')."""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher


def normalize_title(title: str) -> str:
    """Comparison key of a title: case-folded ASCII letters and digits only."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.casefold())


def similar_titles(a: str, b: str, threshold: float = 0.93) -> bool:
    """True for spelling variants of one title ('Consitutional AI' vs 'Constitutional AI')."""
    na, nb = normalize_title(a), normalize_title(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    if abs(len(na) - len(nb)) > max(3, len(na) // 10):
        return False
    return SequenceMatcher(None, na, nb).ratio() >= threshold
