"""Teacher top-k cache: bit-exact round trip, resumable writing, clear errors on damaged files.

The expected contents are computed here with ``log_softmax(...).topk`` on a bigram teacher
(logits = a row of a fixed matrix per token, so padding and batching cannot change them), and
the file layout is checked by parsing the safetensors header by hand and with
``safetensors.torch.load_file``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

from reference_impls import REGISTRY
from reference_impls.teacher_cache import TeacherCache, TeacherCacheError, write_teacher_cache
from reference_impls.topk import topk_forward_kl

VOCAB = 40


class Bigram:
    """Teacher whose logits at a position depend on that token only; counts its calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0)) * 3
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, ids: Tensor) -> Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated interruption")
        self.calls += 1
        return self.table[ids]


def corpus(n: int = 11, seed: int = 1) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=gen)
    return [torch.randint(VOCAB, (int(length),), generator=gen) for length in lengths]


def write(path: Path, teacher: Bigram | None = None, **kwargs: object) -> Path:
    options: dict[str, object] = {"k": 5, "chunk_size": 3, "batch_size": 2, "progress": False}
    options.update(kwargs)
    sequences = options.pop("sequences", corpus())
    return write_teacher_cache(path, teacher or Bigram(), sequences, **options)  # type: ignore[arg-type]


def raw_header(path: Path) -> tuple[int, dict[str, object]]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return 8 + n, json.loads(data[8 : 8 + n])


# ------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    ("ids_dtype", "logprobs_dtype"),
    [(torch.int32, torch.float32), (torch.int64, torch.bfloat16)],
)
def test_round_trip_is_bit_exact(
    tmp_path: Path, ids_dtype: torch.dtype, logprobs_dtype: torch.dtype
) -> None:
    teacher, sequences = Bigram(), corpus()
    path = write(
        tmp_path / "cache.safetensors",
        teacher,
        sequences=sequences,
        storage_temperature=1.5,
        ids_dtype=ids_dtype,
        logprobs_dtype=logprobs_dtype,
        teacher_description="bigram table, seed 0",
    )
    with TeacherCache.open(path) as cache:
        assert len(cache) == len(sequences)
        assert (cache.k, cache.vocab_size, cache.storage_temperature) == (5, VOCAB, 1.5)
        assert cache.teacher == "bigram table, seed 0"
        assert cache.lengths.tolist() == [len(s) for s in sequences]
        for index, seq in enumerate(sequences):
            values, ids = torch.log_softmax(teacher.table[seq] / 1.5, dim=-1).topk(5, dim=-1)
            got_ids, got_lps = cache[index]
            assert got_ids.dtype == ids_dtype and got_lps.dtype == logprobs_dtype
            assert torch.equal(got_ids, ids.to(ids_dtype))
            assert torch.equal(got_lps, values.to(logprobs_dtype))
        last_ids, _ = cache[-1]
        assert torch.equal(last_ids, cache[len(sequences) - 1][0])
        with pytest.raises(IndexError):
            cache[len(sequences)]


def test_file_is_plain_safetensors_with_the_documented_layout(tmp_path: Path) -> None:
    sequences = corpus()
    path = write(tmp_path / "cache.safetensors", sequences=sequences)
    start, header = raw_header(path)
    meta = header["__metadata__"]
    assert isinstance(meta, dict)
    assert meta["format"] == "kd-atlas-teacher-topk" and meta["format_version"] == "1"
    assert (meta["k"], meta["vocab_size"], meta["storage_temperature"]) == ("5", "40", "1.0")
    assert (meta["ids_dtype"], meta["logprobs_dtype"]) == ("int32", "float32")
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()[start:]).hexdigest()
    n_tokens = sum(len(s) for s in sequences)
    assert meta["n_tokens"] == str(n_tokens) and meta["n_sequences"] == str(len(sequences))
    tensors = load_file(str(path))
    assert tensors["ids"].shape == tensors["logprobs"].shape == (n_tokens, 5)
    lengths = torch.tensor([len(s) for s in sequences])
    assert tensors["offsets"].tolist() == [0, *lengths.cumsum(0).tolist()]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.tmp"))


def test_a_full_support_cache_gives_the_dense_forward_kl(tmp_path: Path) -> None:
    # End to end: cache with k = V in float32, then the sparse loss on a batch read back
    # equals the dense forward KL on the teacher's logits (float32 rounding only).
    teacher, sequences = Bigram(), corpus(n=4)
    path = write(tmp_path / "full.safetensors", teacher, sequences=sequences, k=VOCAB)
    with TeacherCache.open(path) as cache:
        ids, lps, mask = cache.get_batch([0, 1, 2, 3])
    longest = mask.shape[1]
    inputs = torch.zeros(4, longest, dtype=torch.int64)
    for row, seq in enumerate(sequences):
        inputs[row, : len(seq)] = seq
    assert mask.tolist() == [[t < len(s) for t in range(longest)] for s in sequences]
    student = torch.randn(4, longest, VOCAB, generator=torch.Generator().manual_seed(2))
    sparse = topk_forward_kl(student, ids, lps, mask)
    dense = REGISTRY["forward_kl"](student, teacher.table[inputs], mask)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_any_iterable_of_lists_is_accepted(tmp_path: Path) -> None:
    sequences = corpus()
    a = write(tmp_path / "a.safetensors", sequences=sequences)
    b = write(tmp_path / "b.safetensors", sequences=(s.tolist() for s in sequences))
    assert a.read_bytes() == b.read_bytes()


def test_progress_goes_to_stderr_and_can_be_silenced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.safetensors", progress=True)
    err = capsys.readouterr().err
    assert "teacher cache: chunk" in err and "wrote" in err
    write(tmp_path / "b.safetensors", progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------ resume
def test_resume_after_an_interruption_writes_the_same_file(tmp_path: Path) -> None:
    clean = write(tmp_path / "clean.safetensors")
    target = tmp_path / "resumed.safetensors"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        write(target, Bigram(fail_after=4))  # 2 batches per chunk: stops after 2 chunks
    partial = tmp_path / "resumed.safetensors.partial"
    assert not target.exists() and partial.is_dir()
    state = json.loads((partial / "state.json").read_text())
    assert len(state["chunks"]) == 2

    teacher = Bigram()
    write(target, teacher)
    assert teacher.calls == 3  # chunks 3 and 4 only (3 + 2 sequences): 2 + 1 batches
    assert target.read_bytes() == clean.read_bytes()
    assert not partial.exists()


def test_resume_refuses_other_settings_or_other_sequences(tmp_path: Path) -> None:
    target = tmp_path / "cache.safetensors"
    with pytest.raises(RuntimeError):
        write(target, Bigram(fail_after=2))
    with pytest.raises(ValueError, match="other settings"):
        write(target, k=4)
    with pytest.raises(ValueError, match="other sequences"):
        write(target, sequences=corpus(seed=9))
    write(target)  # the same settings and data still resume
    assert TeacherCache.open(target).n_tokens == sum(len(s) for s in corpus())


def test_an_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write(path, k=3)
    assert path.read_bytes() == before
    write(path, k=3, overwrite=True)
    assert TeacherCache.open(path).k == 3


def test_invalid_writer_inputs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        write(tmp_path / "a.safetensors", k=VOCAB + 1)
    with pytest.raises(ValueError, match="logprobs_dtype"):
        write(tmp_path / "b.safetensors", logprobs_dtype=torch.float16)
    with pytest.raises(ValueError, match="non-empty"):
        write(tmp_path / "c.safetensors", sequences=[[1, 2], []])
    with pytest.raises(ValueError, match="no sequences"):
        write(tmp_path / "d.safetensors", sequences=[])


# ------------------------------------------------------------------------ damaged files
def test_a_flipped_data_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.safetensors")
    start, _ = raw_header(path)
    data = bytearray(path.read_bytes())
    data[start + (len(data) - start) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    cache = TeacherCache.open(path, verify=False)  # the header and sizes are still fine
    with pytest.raises(TeacherCacheError, match="checksum mismatch"):
        cache.verify()
    with pytest.raises(TeacherCacheError, match="checksum mismatch"):
        TeacherCache.open(path)  # small files are verified on open by default


@pytest.mark.parametrize("keep", ["4 bytes", "half the header", "half the data", "all but 1"])
def test_a_truncated_file_gives_a_clear_error_on_open(tmp_path: Path, keep: str) -> None:
    path = write(tmp_path / "cache.safetensors")
    data = path.read_bytes()
    start, _ = raw_header(path)
    size = {
        "4 bytes": 4,
        "half the header": start // 2,
        "half the data": (start + len(data)) // 2,
        "all but 1": len(data) - 1,
    }[keep]
    path.write_bytes(data[:size])
    with pytest.raises(TeacherCacheError, match="truncated") as info:
        TeacherCache.open(path, verify=False)
    assert str(path) in str(info.value)


def test_other_files_are_not_taken_for_a_cache(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    plain.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    with pytest.raises(TeacherCacheError, match="not a teacher top-k cache"):
        TeacherCache.open(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 6) + b"{nope}")
    with pytest.raises(TeacherCacheError, match="not valid JSON"):
        TeacherCache.open(garbage)
    with pytest.raises(FileNotFoundError):
        TeacherCache.open(tmp_path / "missing.safetensors")
