r"""Teacher cache: run the teacher once, store sparse targets per token, read them lazily.

:func:`write_teacher_cache` runs a ``teacher`` callable (token ids ``[B, L]`` -> logits
``[B, L, V]``) over token sequences and writes, for every position, sparse targets of the
teacher :math:`p = \mathrm{softmax}(z_t / T_s)` (storage temperature :math:`T_s`):

* ``mode="topk"``: its ``k`` most likely ids and their log-probabilities over the full
  vocabulary (:func:`reference_impls.topk.teacher_topk`), for
  :func:`reference_impls.topk.topk_forward_kl` and its siblings;
* ``mode="sampled"`` (Sparse Logit Sampling): ``samples`` draws from the proposal :math:`\pi
  \propto p^{1/T_\pi}`, kept as distinct ids with counts, plus :math:`\log p` and :math:`\log
  \pi` there when :math:`T_\pi \ne 1` (:func:`reference_impls.topk.teacher_sample`). Reading
  gives the unbiased weights of :func:`reference_impls.topk.importance_weights` for
  :func:`reference_impls.topk.sampled_kd_loss`. The draws of a sequence come from a generator
  seeded by ``seed`` and its index: batching, chunking and interruptions do not change them.

:class:`TeacherCache` reads either back lazily, one sequence at a time.

**File format**: plain safetensors (any reader opens it). Data, in order: ``offsets``
``[n_sequences + 1]`` int64 (sequence ``s`` owns token rows ``offsets[s]:offsets[s+1]``); sampled
only, ``entry_offsets`` (its distinct-id entries); then the mode's tensors
(:func:`reference_impls.cache_format.layout`): top-k ``ids`` and ``logprobs`` ``[n_tokens,
k]``; sampled ``n_unique`` ``[n_tokens]`` int16, ``ids`` and ``counts`` (int16) ``[n_entries]``
and, if :math:`T_\pi \ne 1`, ``logprobs`` and ``proposal_logprobs`` ``[n_entries]``. ids are
int32 (default) or int64, log-probs float32 (default) or bfloat16 (~3 significant digits).
Row ``t`` is the prediction of the token *after* position ``t``: cache the student's inputs.
Metadata (strings): ``format`` (``kd-atlas-teacher-topk`` / ``-sampled``), ``format_version``,
``mode``, ``k`` or ``samples``, ``proposal_temperature``, ``seed``, ``n_entries``,
``vocab_size``, ``storage_temperature``, ``ids_dtype``, ``logprobs_dtype``, ``n_sequences``,
``n_tokens``, ``teacher`` (a free description) and ``sha256`` of the whole data region.

**Writing** is chunked and resumable: chunks of ``chunk_size`` sequences become shards in
``<path>.partial/`` next to a ``state.json`` of the settings and finished chunks (each written
to a temporary file, then renamed). A rerun with the same settings skips finished chunks
(checking their sequences) and continues; the shards are then streamed into ``<path>.tmp``,
the checksum written into its header and the file renamed to ``path`` before the partial
directory is removed. So the file is absent or complete, and a resumed run writes the same
bytes as an uninterrupted one. Shorter sequences of a batch are right-padded with ``pad_id``:
the teacher must be causal for that to be harmless (else ``batch_size=1``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence, Sized
from pathlib import Path
from typing import IO, Any, Literal

import torch
from safetensors import safe_open
from torch import Tensor

from reference_impls.cache_format import (
    DTYPES,
    FORMAT_VERSION,
    FORMATS,
    TeacherCacheError,
    check_cache_header,
    chunks,
    entries_per_sequence,
    file_sha256,
    header_bytes,
    layout,
    load_state,
    prefix_names,
    read_header,
    save_tensors,
    sequences_sha256,
    shard_tensor,
    tensor_bytes,
    writer_settings,
)
from reference_impls.jobs import Progress, write_atomic, write_text_atomic
from reference_impls.topk import importance_weights, teacher_sample, teacher_topk

_AUTO_VERIFY_BYTES = 16 * 1024 * 1024  # open() checks the checksum of smaller files by default

Teacher = Callable[[Tensor], Tensor]  # ids [B, L] -> logits [B, L, V]
CacheMode = Literal["topk", "sampled"]


# ------------------------------------------------------------------------------------ read


class TeacherCache:
    """Lazy reader of a teacher cache written by :func:`write_teacher_cache` (either mode).

    ``cache[s]`` returns sequence ``s``'s ``(ids, logprobs)`` ``[L_s, k]`` in the stored dtypes
    (top-k) or ``(ids, weights)`` ``[L_s, m_s]`` int64/float32 (sampled: the importance weights,
    right-padded with id 0 and weight 0 to the most distinct ids of a token), read from disk on
    demand with ``safetensors.safe_open``. Open with :meth:`open`; use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path: Path, header: dict[str, Any], data_start: int) -> None:
        self.path = path
        self.metadata: dict[str, str] = dict(header["__metadata__"])
        self._data_start = data_start
        meta = self.metadata
        self.mode: str = meta.get("mode", "topk")
        self.k = int(meta.get("k", "0"))  # top-k only
        self.samples = int(meta.get("samples", "0"))  # sampled only
        self.proposal_temperature = float(meta.get("proposal_temperature", "1.0"))
        self.vocab_size = int(meta["vocab_size"])
        self.storage_temperature = float(meta["storage_temperature"])
        self.teacher = meta["teacher"]
        self.n_tokens = int(meta["n_tokens"])
        self.ids_dtype = DTYPES[meta["ids_dtype"]][0]
        self.logprobs_dtype = DTYPES[meta["logprobs_dtype"]][0]
        self._names = [name for name, *_ in layout(meta)]
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            prefix = [self._file.get_tensor(n) for n in prefix_names(self.mode)]  # type: ignore[no-untyped-call]
        except Exception as err:  # safetensors raises its own error types, without the path
            raise TeacherCacheError(f"{path}: safetensors cannot read it ({err})") from err
        self.offsets: Tensor = prefix[0]
        self.entry_offsets: Tensor | None = prefix[1] if len(prefix) > 1 else None
        ends = [self.n_tokens, int(meta.get("n_entries", "0"))]
        for name, offsets, end in zip(prefix_names(self.mode), prefix, ends, strict=False):
            if (
                offsets.numel() < 2
                or int(offsets[0]) != 0
                or int(offsets[-1]) != end
                or bool((offsets.diff() <= 0).any())
            ):
                raise TeacherCacheError(
                    f"{path}: {name} must rise strictly from 0 to {end}; corrupt file?"
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

    def _slice(self, name: str, start: int, end: int) -> Tensor:
        part: Tensor = self._file.get_slice(name)[start:end]  # type: ignore[no-untyped-call]
        return part

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sequence index {index} out of range for {n} sequences")
        index %= n
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        if self.entry_offsets is None:
            return self._slice("ids", start, end), self._slice("logprobs", start, end)
        first, last = int(self.entry_offsets[index]), int(self.entry_offsets[index + 1])
        n_unique = self._slice("n_unique", start, end).long()
        if int(n_unique.sum()) != last - first or bool((n_unique < 1).any()):
            raise TeacherCacheError(
                f"{self.path}: sequence {index}'s n_unique do not add up to its "
                f"{last - first} entries; corrupt file?"
            )
        stored = {name: self._slice(name, first, last) for name in self._names[1:]}
        weights = importance_weights(
            stored["counts"], self.samples, stored.get("logprobs"), stored.get("proposal_logprobs")
        )
        rows = torch.repeat_interleave(torch.arange(end - start), n_unique)
        token_start = torch.repeat_interleave(n_unique.cumsum(0) - n_unique, n_unique)
        cols = torch.arange(last - first) - token_start
        width = int(n_unique.max())
        ids = torch.zeros(end - start, width, dtype=torch.int64)
        dense = torch.zeros(end - start, width, dtype=torch.float32)
        ids[rows, cols], dense[rows, cols] = stored["ids"].long(), weights.float()
        return ids, dense

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Right-padded ``(ids int64 [B, L, w], values float32 [B, L, w], mask [B, L])``.

        ``values`` are log-probs (top-k, ``w = k``) or weights (sampled, ``w`` the widest
        token). ``mask`` is True at real positions; padding holds ids ``0..w-1`` and log-probs
        ``-log k`` (top-k: a valid distribution) or weights 0, ignored by the losses anyway.
        """
        rows = [self[i] for i in indices]
        longest = max((len(ids) for ids, _ in rows), default=0)
        width = self.k if self.mode == "topk" else max((i.shape[-1] for i, _ in rows), default=1)
        fill = -math.log(width) if self.mode == "topk" else 0.0
        b = len(rows)
        ids = torch.arange(width, dtype=torch.int64).repeat(b, longest, 1)
        values = torch.full((b, longest, width), fill, dtype=torch.float32)
        mask = torch.zeros(b, longest, dtype=torch.bool)
        for row, (i, v) in enumerate(rows):
            ids[row, : len(i), : i.shape[-1]] = i
            values[row, : len(v), : v.shape[-1]] = v.float()
            mask[row, : len(i)] = True
        return ids, values, mask

    def close(self) -> None:
        """Release the file handle."""
        self._file = None  # type: ignore[assignment]

    def __enter__(self) -> TeacherCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        size = f"k={self.k}" if self.mode == "topk" else f"samples={self.samples}"
        return (
            f"TeacherCache({str(self.path)!r}, mode={self.mode}, sequences={len(self)}, "
            f"tokens={self.n_tokens}, {size}, V={self.vocab_size}, "
            f"T_store={self.storage_temperature}, logprobs={self.metadata['logprobs_dtype']})"
        )


# ----------------------------------------------------------------------------------- write


def _sequence_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of sequence ``index``'s draws: independent of batching and resumption."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@torch.no_grad()
def _targets_of_chunk(
    teacher: Teacher,
    chunk: list[Tensor],
    first_index: int,
    settings: dict[str, Any],
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device | str | None,
) -> tuple[dict[str, Tensor], int]:
    """Run the teacher on ``chunk``; return the mode's tensors (CPU, stored dtypes) and V."""
    slots = layout(settings)
    parts: dict[str, list[Tensor]] = {name: [] for name, *_ in slots}
    temperature, vocab = float(settings["storage_temperature"]), -1
    for first in range(0, len(chunk), batch_size):
        batch = chunk[first : first + batch_size]
        inputs = torch.full((len(batch), max(s.numel() for s in batch)), pad_id, dtype=torch.int64)
        for row, seq in enumerate(batch):
            inputs[row, : seq.numel()] = seq
        logits = teacher(inputs.to(device) if device is not None else inputs)
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(inputs.shape):
            raise ValueError(
                f"the teacher must map ids {tuple(inputs.shape)} to logits [B, L, V], got "
                f"{tuple(logits.shape)}"
            )
        vocab = logits.shape[-1]
        if settings.get("mode") != "sampled":
            if settings["k"] > vocab:
                raise ValueError(f"k={settings['k']} exceeds the teacher's vocabulary V={vocab}")
            ids, lps = (
                t.cpu() for t in teacher_topk(logits, settings["k"], temperature=temperature)
            )
            for row, seq in enumerate(batch):
                parts["ids"].append(ids[row, : seq.numel()])
                parts["logprobs"].append(lps[row, : seq.numel()])
            continue
        for row, seq in enumerate(batch):
            gen = _sequence_generator(settings["seed"], first_index + first + row, logits.device)
            drawn = teacher_sample(
                logits[row, : seq.numel()],
                settings["samples"],
                temperature=temperature,
                proposal_temperature=float(settings["proposal_temperature"]),
                generator=gen,
            )._asdict()
            for name in parts:
                parts[name].append(drawn[name].cpu())
    return {name: torch.cat(parts[name]).to(DTYPES[dtype][0]) for name, _, _, dtype in slots}, vocab


def write_teacher_cache(
    path: str | os.PathLike[str],
    teacher: Teacher,
    sequences: Iterable[Sequence[int] | Tensor],
    *,
    k: int | None = None,
    mode: CacheMode = "topk",
    samples: int | None = None,
    proposal_temperature: float = 1.0,
    seed: int = 0,
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
    """Run ``teacher`` over ``sequences`` and write their cache to ``path``; return it.

    ``mode="topk"`` needs ``k``; ``mode="sampled"`` needs ``samples`` (draws per token, at
    most 32767) and takes ``proposal_temperature`` and ``seed``. ``sequences`` is any iterable
    of 1-D token-id sequences (re-iterated from the start on resume: it must yield the same
    sequences again). ``chunk_size`` sequences make one resumable chunk, ``batch_size`` go
    through the teacher at once (on ``device`` if given). An existing ``<path>.partial/`` from
    an interrupted run with the same settings is resumed. ``teacher_description`` (e.g. model
    name and revision) is stored in the metadata; a resumed run must pass the same one.
    """
    path = Path(path)
    settings = writer_settings(
        mode,
        k if mode == "topk" else samples,
        proposal_temperature=proposal_temperature,
        seed=seed,
        storage_temperature=storage_temperature,
        chunk_size=chunk_size,
        batch_size=batch_size,
        ids_dtype=ids_dtype,
        logprobs_dtype=logprobs_dtype,
        teacher_description=teacher_description,
    )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it (a leftover {path.name}.partial "
            "directory next to it, if any, is stale and can be deleted)"
        )
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    state = load_state(partial, settings)
    total = math.ceil(len(sequences) / chunk_size) if isinstance(sequences, Sized) else None
    bar = Progress(total, enabled=progress, min_interval=0.2)

    index = -1
    for index, chunk in enumerate(chunks(sequences, chunk_size)):
        fingerprint = sequences_sha256(chunk)
        if index < len(state["chunks"]):  # finished before the interruption
            if state["chunks"][index]["sequences_sha256"] != fingerprint:
                raise ValueError(
                    f"chunk {index} holds other sequences than in the interrupted run kept in "
                    f"{partial}; pass the same sequences in the same order, or delete it"
                )
            bar.advance(f"teacher cache: chunk {index + 1} resumed")
            continue
        tensors, vocab = _targets_of_chunk(
            teacher,
            chunk,
            index * chunk_size,
            settings,
            batch_size=batch_size,
            pad_id=pad_id,
            device=device,
        )
        if state["vocab_size"] not in (None, vocab):
            raise ValueError(
                f"the teacher's vocabulary changed from {state['vocab_size']} to "
                f"{vocab} at chunk {index}"
            )
        state["vocab_size"] = vocab
        lengths = torch.tensor([seq.numel() for seq in chunk], dtype=torch.int64)
        shard = partial / f"chunk-{index:06d}.safetensors"
        save_tensors(shard, [("lengths", lengths), *tensors.items()], {})
        n_tokens = int(lengths.sum())
        state["chunks"].append(
            {
                "file": shard.name,
                "size": shard.stat().st_size,
                "n_sequences": len(chunk),
                "n_tokens": n_tokens,
                "n_entries": tensors["ids"].shape[0] if mode == "sampled" else n_tokens,
                "sequences_sha256": fingerprint,
            }
        )
        write_text_atomic(partial / "state.json", json.dumps(state))
        bar.advance(f"teacher cache: chunk {index + 1}, {n_tokens} tokens")
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


def _merge(path: Path, partial: Path, state: dict[str, Any]) -> None:
    """Stream the shards into ``path`` (via a temporary file) with the checksum in its header."""
    settings, chunk_list = state["settings"], state["chunks"]
    mode = settings.get("mode", "topk")
    shards = [partial / chunk["file"] for chunk in chunk_list]
    per_shard = [shard_tensor(shard, "lengths") for shard in shards]
    lengths = torch.cat(per_shard)
    zero = torch.zeros(1, dtype=torch.int64)
    prefix = [("offsets", torch.cat([zero, lengths.cumsum(0)]))]
    if mode == "sampled":
        entries = torch.cat(
            [entries_per_sequence(s, n) for s, n in zip(shards, per_shard, strict=True)]
        )
        prefix.append(("entry_offsets", torch.cat([zero, entries.cumsum(0)])))
    n_rows = {"tokens": int(lengths.sum()), "entries": sum(c["n_entries"] for c in chunk_list)}
    slots = layout(settings)

    def shape(rows: str, width: int | None, count: int) -> tuple[int, ...]:
        return (count,) if width is None else (count, width)

    shapes = [  # meta tensors: dtype and shape for the header, no data
        *prefix,
        *(
            (
                name,
                torch.empty(shape(rows, width, n_rows[rows]), dtype=DTYPES[dt][0], device="meta"),
            )
            for name, rows, width, dt in slots
        ),
    ]
    if mode == "sampled":
        sizes = {
            "samples": str(settings["samples"]),
            "proposal_temperature": settings["proposal_temperature"],
            "seed": str(settings["seed"]),
            "n_entries": str(n_rows["entries"]),
        }
    else:
        sizes = {"k": str(settings["k"])}
    metadata = {
        "format": FORMATS[mode],
        "format_version": FORMAT_VERSION,
        "mode": mode,
        **sizes,
        "vocab_size": str(state["vocab_size"]),
        "storage_temperature": settings["storage_temperature"],
        "ids_dtype": settings["ids_dtype"],
        "logprobs_dtype": settings["logprobs_dtype"],
        "n_sequences": str(len(lengths)),
        "n_tokens": str(n_rows["tokens"]),
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

        for _, t in prefix:
            emit(t)
        for name, rows, width, _ in slots:  # one shard in memory at a time
            for shard, chunk in zip(shards, chunk_list, strict=True):
                t = shard_tensor(shard, name)
                expected = shape(rows, width, chunk[f"n_{rows}"])
                if tuple(t.shape) != expected:
                    raise TeacherCacheError(
                        f"{shard}: {name} has shape {tuple(t.shape)}, expected "
                        f"{expected}; delete {partial} and start again"
                    )
                emit(t)
        metadata["sha256"] = digest.hexdigest()
        final = header_bytes(shapes, metadata)
        assert len(final) == len(placeholder)
        f.seek(0)
        f.write(final)

    write_atomic(path, write)
