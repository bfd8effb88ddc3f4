r"""The teacher cache's file format: safetensors written with torch alone, and its checks.

A safetensors file is an 8-byte little-endian header length, a JSON header (dtype, shape and
byte offsets of each tensor, plus string metadata) and the raw little-endian data. We emit it
ourselves so that shards stream into one file without holding them all in memory
(``safetensors.torch.save_file`` would also need numpy); see :mod:`reference_impls.teacher_cache`
for the cache's tensors and metadata.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

from reference_impls.jobs import write_atomic

FORMAT = "kd-atlas-teacher-topk"
FORMAT_VERSION = "1"
MAX_HEADER = 100 * 1024 * 1024  # the limit safetensors itself enforces
READ_BLOCK = 1 << 20
DTYPES: dict[str, tuple[torch.dtype, str]] = {  # our name -> (torch dtype, safetensors code)
    "int32": (torch.int32, "I32"),
    "int64": (torch.int64, "I64"),
    "float32": (torch.float32, "F32"),
    "bfloat16": (torch.bfloat16, "BF16"),
}
DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
IDS_DTYPES = ("int32", "int64")
LOGPROBS_DTYPES = ("float32", "bfloat16")


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


def check_cache_header(path: Path, header: dict[str, Any]) -> None:
    """Check that the metadata and the three tensors' dtypes and shapes agree."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TeacherCacheError(f"{path} is not a teacher top-k cache (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TeacherCacheError(
            f"{path} has cache format version {meta.get('format_version')!r}; this reader "
            f"understands version {FORMAT_VERSION}"
        )
    required = (
        "k",
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
    try:
        k, n_seq, n_tok = int(meta["k"]), int(meta["n_sequences"]), int(meta["n_tokens"])
        int(meta["vocab_size"]), float(meta["storage_temperature"])
    except ValueError as err:
        raise TeacherCacheError(f"{path}: malformed metadata ({err}); corrupt file?") from err
    if meta["ids_dtype"] not in IDS_DTYPES or meta["logprobs_dtype"] not in LOGPROBS_DTYPES:
        raise TeacherCacheError(f"{path}: unsupported dtypes in metadata; corrupt file?")
    expected = {
        "offsets": ("I64", [n_seq + 1]),
        "ids": (DTYPES[meta["ids_dtype"]][1], [n_tok, k]),
        "logprobs": (DTYPES[meta["logprobs_dtype"]][1], [n_tok, k]),
    }
    for name, (dtype, shape) in expected.items():
        entry = header.get(name)
        if not isinstance(entry, dict) or [entry.get("dtype"), entry.get("shape")] != [
            dtype,
            shape,
        ]:
            raise TeacherCacheError(
                f"{path}: tensor {name!r} should be {dtype} {shape} per the metadata, the header "
                f"says {entry}; corrupt file?"
            )
