"""The validated load cache: each paper file's validated model as JSON, keyed by the file's
content hash, so that loading an unchanged knowledge base skips YAML parsing.

One file, ``<root>/.cache/kbtool/papers.cache``: a JSON header line (format, key, one ``[file,
content digest, length, stat signature]`` entry per paper, digest of the body, and the digest
of a load's inputs that were found consistent), then the bodies. The key covers everything
validation depends on besides the file itself (package and pydantic versions, the model's
source and JSON Schema, the taxonomy vocabulary), so a change to any of them invalidates every
entry; a changed file invalidates only its own entry.

JSON, not pickle: unpickling runs arbitrary code, and a cache file lying in a checkout must
never be able to do that. Every cached body is validated again by pydantic (in Rust, from JSON,
which is fast), so even a doctored cache yields only models the schema accepts. Only files that
validated without a problem are cached, so a cold load and a warm one report the same problems.
Any unreadable, truncated or mismatching cache is ignored (a cold load follows), and the cache
is written atomically; a read-only knowledge base simply gets no cache.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from kbtool.core import model
from kbtool.core.atomic import write_bytes_atomic
from kbtool.core.taxonomy import TaxonomyUnavailableError, bundled_vocabulary

CACHE_FILE = Path(".cache") / "kbtool" / "papers.cache"
FORMAT = "kbtool-load-cache/3"


def content_digest(raw: bytes | memoryview) -> str:
    """The content hash that keys a file's entry: SHA-256 (CPUs with SHA extensions compute
    it about three times faster than BLAKE2b), 128 bits kept."""
    return hashlib.sha256(raw).hexdigest()[:32]


#: (size, mtime_ns, ctime_ns, inode): a file with the same signature has not been rewritten.
Signature = tuple[int, int, int, int]


class Entry(NamedTuple):
    """One cached file: the digest of its bytes, its validated model as JSON, and its stat
    signature when that can be trusted to tell an unchanged file (see ``paper_files``).
    A named tuple: 10,000 of them are made on every load."""

    digest: str
    body: bytes
    signature: Signature | None = None


@functools.cache
def cache_key() -> str:
    """A digest of everything besides the file that decides what a file validates to."""
    from importlib import metadata  # deferred: only a load with a cache needs it

    try:
        version = metadata.version("kd-atlas")
    except metadata.PackageNotFoundError:
        version = "unknown"
    import pydantic

    try:
        vocabulary = bundled_vocabulary()
        words = [vocabulary.pillars, vocabulary.elicitation, vocabulary.objectives]
    except TaxonomyUnavailableError:
        words = None  # papers that need it fail, so they are not cached
    parts: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "pydantic": pydantic.VERSION,
        "model_source": content_digest(Path(model.__file__).read_bytes()),
        "schema": content_digest(
            json.dumps(model.Paper.model_json_schema(), sort_keys=True).encode()
        ),
        "vocabulary": words,
    }
    return content_digest(json.dumps(parts, sort_keys=True).encode())


class CacheFile(NamedTuple):
    """What a cache file holds: the entries by file, and the digest of the inputs of the
    load that wrote it when that load found no problem at all (see ``loader``)."""

    entries: dict[str, Entry]
    consistent: str | None = None


def read_cache(root: Path) -> CacheFile:
    """The cache of ``root``: empty when it is missing, unreadable, corrupt, or was written
    for another key."""
    try:
        data = (root / CACHE_FILE).read_bytes()
        start = data.index(b"\n") + 1
        header = json.loads(data[:start])
        if header.get("format") != FORMAT or header.get("key") != cache_key():
            return CacheFile({})
        body = memoryview(data)[start:]  # not copied: the entries are sliced from ``data``
        if header.get("body") != content_digest(body):
            return CacheFile({})
        consistent = header.get("consistent")
        if consistent is not None and type(consistent) is not str:
            _malformed()
        return CacheFile(_entries(header["entries"], data, start), consistent)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return CacheFile({})


def _entries(rows: list[Any], data: bytes, start: int) -> dict[str, Entry]:
    """The entries of the header's ``[file, digest, length, signature]`` rows, their bodies
    following one another in ``data`` from ``start``; ValueError or TypeError when a row has
    the wrong shape. Checked column by column (a load reads 10,000 rows)."""
    if not rows:
        return {} if len(data) == start else _malformed()
    rels, digests, lengths, signatures = zip(*rows, strict=True)
    if not set(map(type, rels)) | set(map(type, digests)) <= {str}:
        _malformed()
    if not set(map(type, lengths)) <= {int}:
        _malformed()
    offsets = list(itertools.accumulate(lengths, initial=start))
    if offsets[-1] != len(data) or min(lengths) < 0:
        _malformed()
    bodies = [data[begin:end] for begin, end in itertools.pairwise(offsets)]
    return dict(zip(rels, map(Entry, digests, bodies, map(_signature, signatures)), strict=True))


def _malformed() -> NoReturn:
    raise ValueError("malformed cache header")


def _signature(value: object) -> Signature | None:
    if type(value) is list and len(value) == 4:
        size, mtime, ctime, inode = value
        if type(size) is type(mtime) is type(ctime) is type(inode) is int:
            return (size, mtime, ctime, inode)
    if value is None:
        return None
    _malformed()


def write_cache(root: Path, entries: dict[str, Entry], consistent: str | None = None) -> None:
    """Write ``entries`` (and ``consistent``, see ``CacheFile``) atomically; a knowledge base
    that cannot be written gets no cache."""
    body = b"".join(e.body for e in entries.values())
    header = {
        "format": FORMAT,
        "key": cache_key(),
        "body": content_digest(body),
        "consistent": consistent,
        "entries": [[rel, e.digest, len(e.body), e.signature] for rel, e in entries.items()],
    }
    data = json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
    try:
        write_bytes_atomic(root / CACHE_FILE, data)
    except OSError:
        return
