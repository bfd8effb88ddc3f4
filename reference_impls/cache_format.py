r"""The teacher cache's file format: safetensors written with torch alone, and its checks.

A safetensors file is an 8-byte little-endian header length, a JSON header (dtype, shape and
byte offsets of each tensor, plus string metadata) and the raw little-endian data. We emit it
ourselves so that shards stream into one file without holding them all in memory
(``safetensors.torch.save_file`` would also need numpy); see :mod:`reference_impls.teacher_cache`
for the cache's tensors and metadata. :func:`layout` says which tensors each cache mode stores
(``topk`` or ``sampled``); the partial directory of an interrupted write (its ``state.json``
and shards) is read here too.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import safe_open
from torch import Tensor

from reference_impls.jobs import write_atomic

FORMAT = "kd-atlas-teacher-topk"
SAMPLED_FORMAT = "kd-atlas-teacher-sampled"
FORMATS = {"topk": FORMAT, "sampled": SAMPLED_FORMAT}  # cache mode -> ``format`` metadata
FORMAT_VERSION = "1"
MAX_HEADER = 100 * 1024 * 1024  # the limit safetensors itself enforces
READ_BLOCK = 1 << 20
DTYPES: dict[str, tuple[torch.dtype, str]] = {  # our name -> (torch dtype, safetensors code)
    "int32": (torch.int32, "I32"),
    "int64": (torch.int64, "I64"),
    "int16": (torch.int16, "I16"),
    "float32": (torch.float32, "F32"),
    "bfloat16": (torch.bfloat16, "BF16"),
}
DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
IDS_DTYPES = ("int32", "int64")
LOGPROBS_DTYPES = ("float32", "bfloat16")
COUNTS_DTYPE = "int16"  # sampled mode: draws per id and distinct ids per token, <= samples
MAX_SAMPLES = torch.iinfo(torch.int16).max

#: One stored tensor: name, whose rows it has (``tokens`` or sampled ``entries``), its width
#: (``None``: 1-D) and dtype name.
Slot = tuple[str, str, int | None, str]


class TeacherCacheError(ValueError):
    """A cache file (or a partial directory) is truncated, corrupt or not a teacher cache."""


# ------------------------------------------------------------------------------ raw format


def tensor_bytes(t: Tensor) -> bytes:
    """The raw little-endian bytes of ``t`` (a copy; torch alone, no numpy)."""
    t = t.detach().to("cpu").contiguous()
    n = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), n) if n else b""


def header_bytes(entries: Sequence[tuple[str, Tensor]], metadata: dict[str, str]) -> bytes:
    """Length prefix plus JSON header for tensors laid out back to back in ``entries`` order.

    Keys are sorted and the JSON is padded with spaces to a multiple of 8 bytes (so the data
    region starts aligned), which makes the header a pure function of its content.
    """
    header: dict[str, Any] = {"__metadata__": metadata}
    position = 0
    for name, t in entries:
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": DTYPES[DTYPE_NAMES[t.dtype]][1],
            "shape": list(t.shape),
            "data_offsets": [position, position + n],
        }
        position += n
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def save_tensors(path: Path, entries: Sequence[tuple[str, Tensor]], meta: dict[str, str]) -> None:
    """Write a small safetensors file atomically (the shards of a partial directory)."""

    def write(f: IO[bytes]) -> None:
        f.write(header_bytes(entries, meta))
        for _, t in entries:
            f.write(tensor_bytes(t))

    write_atomic(path, write)


def file_sha256(path: Path, start: int = 0) -> str:
    """SHA-256 of the bytes of ``path`` from ``start`` to the end, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """Parse and size-check a safetensors header; return ``(data_start, header)``.

    Raises :class:`TeacherCacheError` naming ``path`` if the file is shorter than its header
    announces, longer than its tensors, or the header is not valid JSON.
    """
    if not path.is_file():
        raise FileNotFoundError(f"teacher cache {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise TeacherCacheError(
                f"{path} is truncated: {size} bytes, not even the 8-byte header length"
            )
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER or 8 + n > size:
            raise TeacherCacheError(
                f"{path} is truncated or not a safetensors file: its header length field says "
                f"{n} bytes but the file has {size} bytes"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TeacherCacheError(
            f"{path}: the header is not valid JSON ({err}); corrupt file?"
        ) from err
    if not isinstance(header, dict):
        raise TeacherCacheError(f"{path}: the header is not a JSON object; corrupt file?")
    try:
        ends = [
            int(entry["data_offsets"][1])
            for name, entry in header.items()
            if name != "__metadata__"
        ]
    except (TypeError, KeyError, IndexError, ValueError) as err:
        raise TeacherCacheError(
            f"{path}: malformed tensor entry in the header ({err!r}); corrupt file?"
        ) from err
    expected = 8 + n + (max(ends) if ends else 0)
    if size < expected:
        raise TeacherCacheError(
            f"{path} is truncated: its header describes {expected} bytes but the file has "
            f"{size}; rewrite it with write_teacher_cache (an interrupted run resumes)"
        )
    if size > expected:
        raise TeacherCacheError(
            f"{path} has {size - expected} unexpected trailing bytes after its tensors "
            f"({size} bytes, {expected} expected); corrupt file?"
        )
    return 8 + n, header


def layout(meta: dict[str, str]) -> list[Slot]:
    """The data tensors (after ``offsets``) a cache of these settings/metadata stores, in order.

    ``topk``: ``ids`` and ``logprobs`` ``[n_tokens, k]``. ``sampled``: ``n_unique``
    ``[n_tokens]`` (distinct ids per token), then per distinct id ``ids`` and ``counts``
    ``[n_entries]``, and when the proposal temperature is not 1 the teacher's ``logprobs`` and
    the proposal's ``proposal_logprobs`` there (for the importance weights).
    """
    ids, lps = meta["ids_dtype"], meta["logprobs_dtype"]
    if meta.get("mode", "topk") == "topk":
        k = int(meta["k"])
        return [("ids", "tokens", k, ids), ("logprobs", "tokens", k, lps)]
    slots: list[Slot] = [
        ("n_unique", "tokens", None, COUNTS_DTYPE),
        ("ids", "entries", None, ids),
        ("counts", "entries", None, COUNTS_DTYPE),
    ]
    if float(meta["proposal_temperature"]) != 1.0:
        slots += [("logprobs", "entries", None, lps), ("proposal_logprobs", "entries", None, lps)]
    return slots


def prefix_names(mode: str) -> tuple[str, ...]:
    """The int64 per-sequence offset tensors stored first: token rows, and sampled entries."""
    return ("offsets",) if mode == "topk" else ("offsets", "entry_offsets")


_REQUIRED = {
    "topk": ("k",),
    "sampled": ("samples", "proposal_temperature", "seed", "n_entries"),
}


def check_cache_header(path: Path, header: dict[str, Any]) -> None:
    """Check that the metadata and the tensors' dtypes and shapes agree."""
    meta = header.get("__metadata__")
    mode = meta.get("mode", "topk") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or mode not in FORMATS or meta.get("format") != FORMATS[mode]:
        raise TeacherCacheError(
            f"{path} is not a teacher top-k cache or a sampled one (no '{FORMAT}' or "
            f"'{SAMPLED_FORMAT}' metadata)"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise TeacherCacheError(
            f"{path} has cache format version {meta.get('format_version')!r}; this reader "
            f"understands version {FORMAT_VERSION}"
        )
    required = (
        *_REQUIRED[mode],
        "vocab_size",
        "storage_temperature",
        "ids_dtype",
        "logprobs_dtype",
        "n_sequences",
        "n_tokens",
        "teacher",
        "sha256",
    )
    missing = [key for key in required if key not in meta]
    if missing:
        raise TeacherCacheError(f"{path}: metadata lacks {missing}; corrupt file?")
    if meta["ids_dtype"] not in IDS_DTYPES or meta["logprobs_dtype"] not in LOGPROBS_DTYPES:
        raise TeacherCacheError(f"{path}: unsupported dtypes in metadata; corrupt file?")
    try:
        n_seq, n_tok = int(meta["n_sequences"]), int(meta["n_tokens"])
        n_entries = int(meta.get("n_entries", "0"))
        int(meta["vocab_size"]), float(meta["storage_temperature"])
        slots = layout(meta)
    except ValueError as err:
        raise TeacherCacheError(f"{path}: malformed metadata ({err}); corrupt file?") from err
    expected = {name: ("I64", [n_seq + 1]) for name in prefix_names(mode)}
    for name, rows, width, dtype in slots:
        shape = [n_tok if rows == "tokens" else n_entries] + ([] if width is None else [width])
        expected[name] = (DTYPES[dtype][1], shape)
    for name, (code, shape) in expected.items():
        entry = header.get(name)
        if not isinstance(entry, dict) or [entry.get("dtype"), entry.get("shape")] != [
            code,
            shape,
        ]:
            raise TeacherCacheError(
                f"{path}: tensor {name!r} should be {code} {shape} per the metadata, the header "
                f"says {entry}; corrupt file?"
            )


# ------------------------------------------------------------------ the partial directory


def as_sequence(seq: Sequence[int] | Tensor) -> Tensor:
    """A 1-D int64 CPU tensor of token ids; ``ValueError`` for an empty or non-1-D one."""
    t = seq if isinstance(seq, Tensor) else torch.as_tensor(list(seq), dtype=torch.int64)
    if t.dim() != 1 or t.numel() == 0 or t.is_floating_point():
        raise ValueError(f"each sequence must be a non-empty 1-D list of token ids, got {t.shape}")
    return t.to("cpu", torch.int64)


def chunks(sequences: Iterable[Sequence[int] | Tensor], size: int) -> Iterator[list[Tensor]]:
    """The sequences in lists of ``size`` (the last may be shorter)."""
    chunk: list[Tensor] = []
    for seq in sequences:
        chunk.append(as_sequence(seq))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def sequences_sha256(chunk: list[Tensor]) -> str:
    """Fingerprint of a chunk's sequences (lengths and ids), to check a resume sees the same."""
    digest = hashlib.sha256()
    for seq in chunk:
        digest.update(struct.pack("<Q", seq.numel()))
        digest.update(tensor_bytes(seq))
    return digest.hexdigest()


def load_state(partial: Path, settings: dict[str, Any]) -> dict[str, Any]:
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


def shard_tensor(shard: Path, name: str) -> Tensor:
    """One tensor of a shard of the partial directory (a clear error if it is damaged)."""
    try:
        with safe_open(str(shard), framework="pt", device="cpu") as f:
            tensor: Tensor = f.get_tensor(name)
            return tensor
    except Exception as err:  # safetensors raises its own error types
        raise TeacherCacheError(
            f"{shard} is damaged ({err}); delete {shard.parent} and start again"
        ) from err


def writer_settings(
    mode: str,
    size: int | None,
    *,
    proposal_temperature: float,
    seed: int,
    storage_temperature: float,
    chunk_size: int,
    batch_size: int,
    ids_dtype: torch.dtype,
    logprobs_dtype: torch.dtype,
    teacher_description: str,
) -> dict[str, Any]:
    """Check the writer's arguments; return the settings a resumed run must repeat.

    ``size`` is ``k`` (top-k) or ``samples`` (sampled). Top-k settings are those of format
    version 1 before the sampled mode existed, so older partial directories still resume.
    """
    if mode not in FORMATS:
        raise ValueError(f"mode must be one of {tuple(FORMATS)}, got {mode!r}")
    size_name = "k" if mode == "topk" else "samples"
    if size is None or size < 1 or chunk_size < 1 or batch_size < 1:
        raise ValueError(
            f"mode={mode!r} needs {size_name} >= 1; chunk_size and batch_size must be >= 1, got "
            f"{size_name}={size}, {chunk_size}, {batch_size}"
        )
    if mode == "sampled" and size > MAX_SAMPLES:
        raise ValueError(f"samples must be at most {MAX_SAMPLES} (int16 counts), got {size}")
    for name, value in (("storage", storage_temperature), ("proposal", proposal_temperature)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}_temperature must be finite and > 0, got {value}")
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
    extra: dict[str, Any] = {"k": size}
    if mode == "sampled":
        extra = {
            "mode": mode,
            "samples": size,
            "proposal_temperature": repr(float(proposal_temperature)),
            "seed": seed,
        }
    return {
        **extra,
        "storage_temperature": repr(float(storage_temperature)),
        "ids_dtype": ids_name,
        "logprobs_dtype": lps_name,
        "chunk_size": chunk_size,
        "teacher": teacher_description,
    }


def entries_per_sequence(shard: Path, lengths: Tensor) -> Tensor:
    """Sampled mode: the number of distinct-id entries of each sequence of a shard."""
    ends = torch.cumsum(shard_tensor(shard, "n_unique").long(), 0)
    ends = torch.cat([torch.zeros(1, dtype=torch.int64), ends])
    bounds = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    return ends[bounds[1:]] - ends[bounds[:-1]]
