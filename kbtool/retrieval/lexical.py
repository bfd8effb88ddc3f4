"""Okapi BM25 over short texts, written out by hand: the fallback ranking when the embedding
model (the ``semantic`` extra) is not installed. Pure Python, no dependencies.

For a query q and a document d of length |d| (in tokens), with average length avgdl over the
corpus of N documents, n(t) documents containing term t and f(t, d) occurrences of t in d::

    score(q, d) = sum_{t in q} idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b |d|/avgdl))
    idf(t)      = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))      (always > 0)

Tokens are lower-cased alphanumeric runs, minus English stop words, with a plural 's' removed
(``models`` -> ``model``), which is enough for paper titles.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "the",
        "to",
        "towards",
        "toward",
        "via",
        "we",
        "what",
        "when",
        "which",
        "while",
        "why",
        "with",
        "without",
        "you",
        "your",
    }
)
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens without stop words, plural 's' stripped."""
    out = []
    for token in _TOKEN.findall(text.casefold()):
        if token in STOPWORDS:
            continue
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        out.append(token)
    return out


class BM25:
    """A BM25 index of a fixed list of documents; ``scores(query)`` gives one score per document."""

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._tf = [Counter(tokenize(doc)) for doc in documents]
        self._len = [sum(tf.values()) for tf in self._tf]
        self._avgdl = (sum(self._len) / len(self._len)) if self._len else 0.0
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(self._tf)
        self.idf = {t: math.log(1.0 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._postings: dict[str, list[int]] = {}
        for i, tf in enumerate(self._tf):
            for term in tf:
                self._postings.setdefault(term, []).append(i)

    def __len__(self) -> int:
        return len(self._tf)

    def scores(self, query: str) -> list[float]:
        """BM25 score of every document for ``query`` (0 for documents sharing no term)."""
        out = [0.0] * len(self._tf)
        avgdl = self._avgdl or 1.0
        for term in set(tokenize(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for i in self._postings[term]:
                f = self._tf[i][term]
                norm = self.k1 * (1.0 - self.b + self.b * self._len[i] / avgdl)
                out[i] += idf * f * (self.k1 + 1.0) / (f + norm)
        return out

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best (document index, score) pairs with a positive score, best first."""
        scored = [(i, s) for i, s in enumerate(self.scores(query)) if s > 0.0]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored[:k]
