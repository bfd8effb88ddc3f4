r"""Teacher top-k cache: run the teacher once, store its top-k log-probabilities, read them lazily.

:func:`write_teacher_cache` runs a ``teacher`` callable (token ids ``[B, L]`` -> logits
``[B, L, V]``) over a dataset of token sequences and writes, for every position, the teacher's
``k`` most likely next-token ids and their log-probabilities (log-softmax over the full
vocabulary at the storage temperature :math:`T_s`, most likely first, as
:func:`reference_impls.topk.teacher_topk`). :class:`TeacherCache` reads them back lazily, one
sequence at a time, for :func:`reference_impls.topk.topk_forward_kl` and its siblings.

**File format** (safetensors: 8-byte little-endian header length, JSON header, raw
little-endian data). Tensors, stored in this order in the data region:

* ``offsets`` ``[n_sequences + 1]`` int64: sequence ``s`` owns rows ``offsets[s]:offsets[s+1]``;
* ``ids`` ``[n_tokens, k]`` int32 (default) or int64;
* ``logprobs`` ``[n_tokens, k]`` float32 (default) or bfloat16 (half the bytes, but about 3
  significant digits: the stored top-k mass, hence the tail bucket, is then only good to ~0.2 %).

Row ``t`` of a sequence is the teacher's prediction of the token *after* position ``t``: cache
the sequences you feed the student as inputs. Header metadata (strings): ``format``
(``kd-atlas-teacher-topk``), ``format_version``, ``k``, ``vocab_size``,
``storage_temperature``, ``ids_dtype``, ``logprobs_dtype``, ``n_sequences``, ``n_tokens``,
``teacher`` (a free description) and ``sha256``, the SHA-256 of the whole data region (every
byte after the header). The file is a plain safetensors file: any safetensors reader opens it.

**Writing** is chunked and resumable. Chunks of ``chunk_size`` sequences are written as shard
files into ``<path>.partial/`` next to a ``state.json`` recording the settings and the finished
chunks (each shard and the state are written to a temporary file, then renamed, so a crash
leaves either the old or the new version). A rerun with the same settings skips the finished
chunks (checking that their sequences are the same) and continues; at the end the shards are
streamed into ``<path>.tmp``, the checksum is written into its header and the file is renamed
to ``path``; only then is the partial directory removed. The final file is therefore either
absent or complete, and independent of interruptions: an interrupted-and-resumed run writes the
same bytes as an uninterrupted one. With a batch of sequences of different lengths, shorter
ones are right-padded with ``pad_id``: the teacher must be causal (position ``t`` sees tokens
``<= t`` only) for the padding to be harmless; use ``batch_size=1`` otherwise.

This module uses torch and ``safetensors`` (for lazy reads), nothing else. The writer emits the
safetensors format itself: it streams the shards into one file without holding them all in
memory, and ``safetensors.torch.save_file`` would need numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import safe_open
from torch import Tensor

from reference_impls.cache_format import (
    DTYPE_NAMES,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    IDS_DTYPES,
    LOGPROBS_DTYPES,
    TeacherCacheError,
    check_cache_header,
    file_sha256,
    header_bytes,
    read_header,
    save_tensors,
    tensor_bytes,
)
from reference_impls.jobs import Progress, write_atomic, write_text_atomic
from reference_impls.topk import teacher_topk

_AUTO_VERIFY_BYTES = 16 * 1024 * 1024  # open() checks the checksum of smaller files by default

Teacher = Callable[[Tensor], Tensor]  # ids [B, L] -> logits [B, L, V]


# ------------------------------------------------------------------------------------ read


class TeacherCache:
    """Lazy reader of a teacher top-k cache written by :func:`write_teacher_cache`.

    ``cache[s]`` returns ``(ids, logprobs)`` of sequence ``s``, each ``[L_s, k]`` in the stored
    dtypes, read from disk on demand with ``safetensors.safe_open``. Open with
    :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: Path, header: dict[str, Any], data_start: int) -> None:
        self.path = path
        self.metadata: dict[str, str] = dict(header["__metadata__"])
        self._data_start = data_start
        meta = self.metadata
        self.k = int(meta["k"])
        self.vocab_size = int(meta["vocab_size"])
        self.storage_temperature = float(meta["storage_temperature"])
        self.teacher = meta["teacher"]
        self.n_tokens = int(meta["n_tokens"])
        self.ids_dtype = DTYPES[meta["ids_dtype"]][0]
        self.logprobs_dtype = DTYPES[meta["logprobs_dtype"]][0]
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self.offsets: Tensor = self._file.get_tensor("offsets")  # type: ignore[no-untyped-call]
        except Exception as err:  # safetensors raises its own error types, without the path
            raise TeacherCacheError(f"{path}: safetensors cannot read it ({err})") from err
        offsets = self.offsets
        if (
            offsets.numel() < 2
            or int(offsets[0]) != 0
            or int(offsets[-1]) != self.n_tokens
            or bool((offsets.diff() <= 0).any())
        ):
            raise TeacherCacheError(
                f"{path}: offsets must rise strictly from 0 to n_tokens={self.n_tokens}; "
                "corrupt file?"
            )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool | None = None) -> TeacherCache:
        """Open ``path`` after checking its header, metadata and size (a truncated file fails).

        ``verify``: also check the SHA-256 of the data (a full read). ``None`` (default) does
        so for files up to 16 MiB, where it is cheap.
        """
        path = Path(path)
        data_start, header = read_header(path)
        check_cache_header(path, header)
        cache = cls(path, header, data_start)
        if verify or (verify is None and path.stat().st_size <= _AUTO_VERIFY_BYTES):
            try:
                cache.verify()
            except TeacherCacheError:
                cache.close()
                raise
        return cache

    def verify(self) -> None:
        """Recompute the data's SHA-256; raise :class:`TeacherCacheError` if it differs."""
        actual = file_sha256(self.path, self._data_start)
        if actual != self.metadata["sha256"]:
            raise TeacherCacheError(
                f"{self.path}: checksum mismatch: the tensor data hash to sha256 {actual} but the "
                f"header records {self.metadata['sha256']}; the file is corrupt, rewrite it"
            )

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def lengths(self) -> Tensor:
        """``[n_sequences]`` int64: the number of positions of each sequence."""
        return self.offsets.diff()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sequence index {index} out of range for {n} sequences")
        index %= n
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        ids: Tensor = self._file.get_slice("ids")[start:end]  # type: ignore[no-untyped-call]
        lps: Tensor = self._file.get_slice("logprobs")[start:end]  # type: ignore[no-untyped-call]
        return ids, lps

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Right-padded ``(ids int64 [B, L, k], logprobs float32 [B, L, k], mask [B, L])``.

        ``mask`` is True at real positions; padding holds ids ``0..k-1`` and log-probs
        ``-log k`` (a valid distribution, ignored by the losses since the mask is False).
        """
        rows = [self[i] for i in indices]
        longest = max((len(ids) for ids, _ in rows), default=0)
        b, k = len(rows), self.k
        ids = torch.arange(k, dtype=torch.int64).repeat(b, longest, 1)
        logprobs = torch.full((b, longest, k), -math.log(k), dtype=torch.float32)
        mask = torch.zeros(b, longest, dtype=torch.bool)
        for row, (i, lp) in enumerate(rows):
            ids[row, : len(i)] = i
            logprobs[row, : len(lp)] = lp.float()
            mask[row, : len(i)] = True
        return ids, logprobs, mask

    def close(self) -> None:
        """Release the file handle."""
        self._file = None  # type: ignore[assignment]

    def __enter__(self) -> TeacherCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TeacherCache({str(self.path)!r}, sequences={len(self)}, tokens={self.n_tokens}, "
            f"k={self.k}, V={self.vocab_size}, T_store={self.storage_temperature}, "
            f"logprobs={self.metadata['logprobs_dtype']})"
        )


# ----------------------------------------------------------------------------------- write


def _as_sequence(seq: Sequence[int] | Tensor) -> Tensor:
    t = seq if isinstance(seq, Tensor) else torch.as_tensor(list(seq), dtype=torch.int64)
    if t.dim() != 1 or t.numel() == 0 or t.is_floating_point():
        raise ValueError(f"each sequence must be a non-empty 1-D list of token ids, got {t.shape}")
    return t.to("cpu", torch.int64)


def _chunks(sequences: Iterable[Sequence[int] | Tensor], size: int) -> Iterator[list[Tensor]]:
    chunk: list[Tensor] = []
    for seq in sequences:
        chunk.append(_as_sequence(seq))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sequences_sha256(chunk: list[Tensor]) -> str:
    digest = hashlib.sha256()
    for seq in chunk:
        digest.update(struct.pack("<Q", seq.numel()))
        digest.update(tensor_bytes(seq))
    return digest.hexdigest()


@torch.no_grad()
def _topk_of_chunk(
    teacher: Teacher,
    chunk: list[Tensor],
    *,
    k: int,
    temperature: float,
    batch_size: int,
    pad_id: int,
    device: torch.device | str | None,
    ids_dtype: torch.dtype,
    logprobs_dtype: torch.dtype,
) -> tuple[Tensor, Tensor, int]:
    """Run the teacher on ``chunk``; return ``(ids [n, k], logprobs [n, k], V)`` on the CPU."""
    all_ids, all_lps, vocab = [], [], -1
    for first in range(0, len(chunk), batch_size):
        batch = chunk[first : first + batch_size]
        longest = max(seq.numel() for seq in batch)
        inputs = torch.full((len(batch), longest), pad_id, dtype=torch.int64)
        for row, seq in enumerate(batch):
            inputs[row, : seq.numel()] = seq
        logits = teacher(inputs.to(device) if device is not None else inputs)
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(inputs.shape):
            raise ValueError(
                f"the teacher must map ids {tuple(inputs.shape)} to logits [B, L, V], got "
                f"{tuple(logits.shape)}"
            )
        vocab = logits.shape[-1]
        if k > vocab:
            raise ValueError(f"k={k} exceeds the teacher's vocabulary V={vocab}")
        ids, lps = teacher_topk(logits, k, temperature=temperature)
        ids, lps = ids.cpu(), lps.cpu()
        for row, seq in enumerate(batch):
            all_ids.append(ids[row, : seq.numel()].to(ids_dtype))
            all_lps.append(lps[row, : seq.numel()].to(logprobs_dtype))
    return torch.cat(all_ids), torch.cat(all_lps), vocab


def _load_state(partial: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Read ``state.json`` of a partial directory and check it matches ``settings``."""
    state_file = partial / "state.json"
    if not state_file.is_file():  # created but no chunk finished: start afresh
        return {
            "format_version": FORMAT_VERSION,
            "settings": settings,
            "vocab_size": None,
            "chunks": [],
        }
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TeacherCacheError(f"{state_file} is unreadable ({err}); delete {partial}") from err
    if state.get("settings") != settings:
        raise ValueError(
            f"{partial} holds an interrupted run with other settings ({state.get('settings')}) "
            f"than this one ({settings}); use the same settings to resume, or delete it"
        )
    for chunk in state["chunks"]:
        shard = partial / chunk["file"]
        if not shard.is_file() or shard.stat().st_size != chunk["size"]:
            raise TeacherCacheError(
                f"{shard} is missing or has the wrong size; delete {partial} and start again"
            )
    return state


def write_teacher_cache(
    path: str | os.PathLike[str],
    teacher: Teacher,
    sequences: Iterable[Sequence[int] | Tensor],
    *,
    k: int,
    storage_temperature: float = 1.0,
    chunk_size: int = 256,
    batch_size: int = 8,
    ids_dtype: torch.dtype = torch.int32,
    logprobs_dtype: torch.dtype = torch.float32,
    teacher_description: str = "",
    pad_id: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Run ``teacher`` over ``sequences`` and write their top-k cache to ``path``; return it.

    ``sequences`` is any iterable of 1-D token-id sequences (re-iterated from the start on
    resume: it must yield the same sequences again). ``chunk_size`` sequences make one
    resumable chunk, ``batch_size`` go through the teacher at once (on ``device`` if given).
    An existing ``<path>.partial/`` from an interrupted run with the same settings is resumed.
    ``teacher_description`` (e.g. model name and revision) is stored in the metadata; a
    resumed run must pass the same one.
    """
    path = Path(path)
    if k < 1 or chunk_size < 1 or batch_size < 1:
        raise ValueError(
            f"k, chunk_size and batch_size must be >= 1, got {k}, {chunk_size}, {batch_size}"
        )
    if not (math.isfinite(storage_temperature) and storage_temperature > 0):
        raise ValueError(f"storage_temperature must be finite and > 0, got {storage_temperature}")
    ids_name, lps_name = DTYPE_NAMES.get(ids_dtype), DTYPE_NAMES.get(logprobs_dtype)
    if ids_name not in IDS_DTYPES or lps_name not in LOGPROBS_DTYPES:
        raise ValueError(
            f"ids_dtype must be one of {IDS_DTYPES} and logprobs_dtype one of "
            f"{LOGPROBS_DTYPES}, got {ids_dtype} and {logprobs_dtype}"
        )
    if sys.byteorder != "little":
        raise RuntimeError(
            "the cache writer emits little-endian data and needs a little-endian host"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it (a leftover {path.name}.partial "
            "directory next to it, if any, is stale and can be deleted)"
        )

    assert ids_name is not None and lps_name is not None
    settings = {
        "k": k,
        "storage_temperature": repr(float(storage_temperature)),
        "ids_dtype": ids_name,
        "logprobs_dtype": lps_name,
        "chunk_size": chunk_size,
        "teacher": teacher_description,
    }
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    state = _load_state(partial, settings)
    total = math.ceil(len(sequences) / chunk_size) if isinstance(sequences, Sized) else None
    bar = Progress(total, enabled=progress, min_interval=0.2)

    index = -1
    for index, chunk in enumerate(_chunks(sequences, chunk_size)):
        fingerprint = _sequences_sha256(chunk)
        if index < len(state["chunks"]):  # finished before the interruption
            if state["chunks"][index]["sequences_sha256"] != fingerprint:
                raise ValueError(
                    f"chunk {index} holds other sequences than in the interrupted run kept in "
                    f"{partial}; pass the same sequences in the same order, or delete it"
                )
            bar.advance(f"teacher cache: chunk {index + 1} resumed")
            continue
        ids, lps, vocab = _topk_of_chunk(
            teacher,
            chunk,
            k=k,
            temperature=storage_temperature,
            batch_size=batch_size,
            pad_id=pad_id,
            device=device,
            ids_dtype=ids_dtype,
            logprobs_dtype=logprobs_dtype,
        )
        if state["vocab_size"] not in (None, vocab):
            raise ValueError(
                f"the teacher's vocabulary changed from {state['vocab_size']} to "
                f"{vocab} at chunk {index}"
            )
        state["vocab_size"] = vocab
        lengths = torch.tensor([seq.numel() for seq in chunk], dtype=torch.int64)
        shard = partial / f"chunk-{index:06d}.safetensors"
        save_tensors(shard, [("lengths", lengths), ("ids", ids), ("logprobs", lps)], {})
        state["chunks"].append(
            {
                "file": shard.name,
                "size": shard.stat().st_size,
                "n_sequences": len(chunk),
                "n_tokens": ids.shape[0],
                "sequences_sha256": fingerprint,
            }
        )
        write_text_atomic(partial / "state.json", json.dumps(state))
        bar.advance(f"teacher cache: chunk {index + 1}, {ids.shape[0]} tokens")
    if index < 0:
        raise ValueError("no sequences to cache")
    if index + 1 < len(state["chunks"]):
        raise ValueError(
            f"{partial} holds {len(state['chunks'])} chunks but the sequences make "
            f"only {index + 1}; pass the same sequences, or delete it"
        )
    _merge(path, partial, state)
    shutil.rmtree(partial)
    bar.close(f"teacher cache: wrote {path} ({path.stat().st_size:,} bytes)")
    return path


def _shard_tensor(shard: Path, name: str) -> Tensor:
    """One tensor of a shard of the partial directory (a clear error if it is damaged)."""
    try:
        with safe_open(str(shard), framework="pt", device="cpu") as f:
            tensor: Tensor = f.get_tensor(name)
            return tensor
    except Exception as err:  # safetensors raises its own error types
        raise TeacherCacheError(
            f"{shard} is damaged ({err}); delete {shard.parent} and start again"
        ) from err


def _merge(path: Path, partial: Path, state: dict[str, Any]) -> None:
    """Stream the shards into ``path`` (via a temporary file) with the checksum in its header."""
    settings, chunks = state["settings"], state["chunks"]
    shards = [partial / chunk["file"] for chunk in chunks]
    lengths = torch.cat([_shard_tensor(shard, "lengths") for shard in shards])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    n_tokens, k = int(offsets[-1]), settings["k"]
    shapes = [  # meta tensors: dtype and shape for the header, no data
        ("offsets", offsets),
        ("ids", torch.empty(n_tokens, k, dtype=DTYPES[settings["ids_dtype"]][0], device="meta")),
        (
            "logprobs",
            torch.empty(n_tokens, k, dtype=DTYPES[settings["logprobs_dtype"]][0], device="meta"),
        ),
    ]
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "k": str(k),
        "vocab_size": str(state["vocab_size"]),
        "storage_temperature": settings["storage_temperature"],
        "ids_dtype": settings["ids_dtype"],
        "logprobs_dtype": settings["logprobs_dtype"],
        "n_sequences": str(len(lengths)),
        "n_tokens": str(n_tokens),
        "teacher": settings["teacher"],
        "sha256": "0" * 64,  # placeholder of the same length
    }

    def write(f: IO[bytes]) -> None:
        placeholder = header_bytes(shapes, metadata)
        f.write(placeholder)
        digest = hashlib.sha256()

        def emit(t: Tensor) -> None:
            data = tensor_bytes(t)
            digest.update(data)
            f.write(data)

        emit(offsets)
        for name in ("ids", "logprobs"):  # one shard in memory at a time
            for shard, chunk in zip(shards, chunks, strict=True):
                t = _shard_tensor(shard, name)
                if tuple(t.shape) != (chunk["n_tokens"], k):
                    raise TeacherCacheError(
                        f"{shard}: {name} has shape {tuple(t.shape)}, expected "
                        f"{(chunk['n_tokens'], k)}; delete {partial} and start again"
                    )
                emit(t)
        metadata["sha256"] = digest.hexdigest()
        final = header_bytes(shapes, metadata)
        assert len(final) == len(placeholder)
        f.seek(0)
        f.write(final)

    write_atomic(path, write)
