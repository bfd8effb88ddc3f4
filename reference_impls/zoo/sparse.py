r"""Zoo entries trained from a sparse teacher cache: top-k vs sampled at equal bytes per token.

An entry names a registry loss of a sparse kind and the cache it reads. The teacher's targets
at the training pool's contexts are written once per run with
:func:`reference_impls.teacher_cache.write_teacher_cache` (the pool's context indices as
sequences of :data:`SEQUENCE_LENGTH` tokens, the language's :math:`\log p` as the teacher's
logits) and read back with :class:`~reference_impls.teacher_cache.TeacherCache`, so each pool
item keeps one fixed sparse target for the whole run, as in offline distillation.

**Equal storage** (pre-registered, never tuned on results): the top-k entry stores
:math:`k = 8` ids (int32) and log-probs (float32), 64 data bytes per token. The sampled entry
draws :math:`N` ids per token from the teacher (:math:`T_\pi = 1`) and stores ``n_unique``
(int16) plus an int32 id and an int16 count per distinct id, i.e. :math:`2 + 6\,E[u_N]` bytes
with :math:`E[u_N] = \sum_v 1 - (1 - p_v)^N` averaged over the training contexts, plus 8 more
bytes of offsets per sequence than the top-k file. :func:`samples_at_equal_bytes` takes the
largest :math:`N` whose expected data bytes do not exceed the top-k file's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from reference_impls.teacher_cache import TeacherCache, write_teacher_cache
from reference_impls.zoo.language import Language

SEQUENCE_LENGTH = 64  # pool items per cached sequence (the per-sequence offsets amortise)
TOPK_K = 8
_IDS_BYTES, _LOGPROB_BYTES, _COUNT_BYTES, _OFFSET_BYTES = 4, 4, 2, 8


@dataclass(frozen=True)
class SparseEntry:
    """A zoo entry: the registry ``loss`` and its cache (``k`` for top-k, else sampled)."""

    loss: str
    k: int | None = None
    bytes_like_k: int | None = None  # sampled: N chosen to store what top-``k`` stores


#: The sparse zoo entries (not in the default run: ``--losses`` names them).
SPARSE_ENTRIES: dict[str, SparseEntry] = {
    f"topk_forward_kl_k{TOPK_K}": SparseEntry("topk_forward_kl", k=TOPK_K),
    f"sampled_kd_loss_at_k{TOPK_K}_bytes": SparseEntry("sampled_kd_loss", bytes_like_k=TOPK_K),
}


def topk_bytes_per_token(k: int, n_tokens: int) -> float:
    """Data bytes per token of a top-``k`` cache of ``n_tokens`` (offsets included)."""
    n_seq = -(-n_tokens // SEQUENCE_LENGTH)
    return (k * (_IDS_BYTES + _LOGPROB_BYTES) * n_tokens + (n_seq + 1) * _OFFSET_BYTES) / n_tokens


def sampled_bytes_per_token(language: Language, samples: int, n_tokens: int) -> float:
    """Expected data bytes per token of a sampled cache with ``samples`` draws (T_pi = 1)."""
    p = language.log_probs[language.train_ids].double().exp()
    unique = (1 - (1 - p) ** samples).sum(-1).mean()
    n_seq = -(-n_tokens // SEQUENCE_LENGTH)
    per_token = _COUNT_BYTES + float(unique) * (_IDS_BYTES + _COUNT_BYTES)
    return per_token + 2 * (n_seq + 1) * _OFFSET_BYTES / n_tokens


def samples_at_equal_bytes(language: Language, k: int, n_tokens: int) -> int:
    """The largest ``N`` whose expected sampled bytes per token do not exceed top-``k``'s."""
    budget, samples = topk_bytes_per_token(k, n_tokens), 1
    while sampled_bytes_per_token(language, samples + 1, n_tokens) <= budget:
        samples += 1
    return samples


def entry_params(name: str, language: Language, n_tokens: int) -> dict[str, object]:
    """What ``zoo.json`` records about an entry's cache."""
    entry = SPARSE_ENTRIES[name]
    if entry.k is not None:
        return {
            "cache": "topk",
            "k": entry.k,
            "bytes_per_token": topk_bytes_per_token(entry.k, n_tokens),
        }
    assert entry.bytes_like_k is not None
    samples = samples_at_equal_bytes(language, entry.bytes_like_k, n_tokens)
    return {
        "cache": "sampled",
        "samples": samples,
        "proposal_temperature": 1.0,
        "expected_bytes_per_token": sampled_bytes_per_token(language, samples, n_tokens),
        "topk_bytes_per_token": topk_bytes_per_token(entry.bytes_like_k, n_tokens),
    }


def cached_targets(
    name: str, language: Language, contexts: Tensor, seed: int
) -> tuple[Tensor, Tensor]:
    """Write the entry's cache for the pool ``contexts``, read it back: ``(ids, values) [n, w]``."""
    entry, n = SPARSE_ENTRIES[name], len(contexts)
    index = language.index(contexts).cpu()
    sequences = [index[i : i + SEQUENCE_LENGTH] for i in range(0, n, SEQUENCE_LENGTH)]
    table = language.log_probs

    def teacher(ids: Tensor) -> Tensor:
        return table[ids.to(table.device)]

    if entry.k is not None:
        options: dict[str, object] = {"k": entry.k}
    else:
        assert entry.bytes_like_k is not None
        samples = samples_at_equal_bytes(language, entry.bytes_like_k, n)
        options = {"mode": "sampled", "samples": samples, "seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_teacher_cache(
            Path(tmp) / "zoo_teacher.safetensors",
            teacher,
            sequences,
            chunk_size=64,
            batch_size=64,
            teacher_description="the zoo's language",
            progress=False,
            **options,  # type: ignore[arg-type]
        )
        with TeacherCache.open(path) as cache:
            ids, values, mask = cache.get_batch(range(len(cache)))
    device = contexts.device
    return ids[mask].to(device), values[mask].to(device)
