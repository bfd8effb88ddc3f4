"""Sampled teacher cache: layout, round trip, determinism, resume, atomicity, corruption.

The bigram teacher and corpus are those of ``test_teacher_cache``; expected log-probabilities
are recomputed here with ``log_softmax`` of the teacher's table, the stored tensors are read
with ``safetensors.torch.load_file`` (not our reader) and the draws' law is checked against
the proposal with a binomial tolerance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_teacher_cache import VOCAB, Bigram, corpus, raw_header

import reference_impls.teacher_cache as teacher_cache
from reference_impls import REGISTRY
from reference_impls.teacher_cache import TeacherCache, TeacherCacheError, write_teacher_cache
from reference_impls.topk import sampled_kd_loss


def write(path: Path, teacher: Bigram | None = None, **kwargs: object) -> Path:
    options: dict[str, object] = {
        "mode": "sampled",
        "samples": 12,
        "chunk_size": 3,
        "batch_size": 2,
        "progress": False,
    }
    options.update(kwargs)
    sequences = options.pop("sequences", corpus())
    return write_teacher_cache(path, teacher or Bigram(), sequences, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("t_proposal", [1.0, 2.0])
def test_layout_and_round_trip(tmp_path: Path, t_proposal: float) -> None:
    teacher, sequences = Bigram(), corpus()
    path = write(
        tmp_path / "s.safetensors",
        teacher,
        sequences=sequences,
        storage_temperature=1.5,
        proposal_temperature=t_proposal,
    )
    start, header = raw_header(path)
    meta = header["__metadata__"]
    assert isinstance(meta, dict)
    assert (meta["format"], meta["mode"], meta["samples"]) == (
        "kd-atlas-teacher-sampled",
        "sampled",
        "12",
    )
    assert meta["proposal_temperature"] == repr(t_proposal)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()[start:]).hexdigest()
    raw = load_file(str(path))
    stored = {"offsets", "entry_offsets", "n_unique", "ids", "counts"}
    if t_proposal != 1.0:
        stored |= {"logprobs", "proposal_logprobs"}
    assert set(raw) == stored
    n_tokens = sum(len(s) for s in sequences)
    assert raw["n_unique"].shape == (n_tokens,) and int(raw["n_unique"].sum()) == len(raw["ids"])
    assert raw["counts"].dtype == torch.int16 and raw["n_unique"].dtype == torch.int16

    tokens = torch.cat(sequences)
    log_p = torch.log_softmax(teacher.table[tokens] / 1.5, -1)
    log_pi = torch.log_softmax(teacher.table[tokens] / (1.5 * t_proposal), -1)
    rows = torch.repeat_interleave(torch.arange(n_tokens), raw["n_unique"].long())
    ids = raw["ids"].long()
    counts = torch.zeros(n_tokens, VOCAB, dtype=torch.int64)
    counts[rows, ids] = raw["counts"].long()
    assert counts.sum(-1).tolist() == [12] * n_tokens
    assert len(set(zip(rows.tolist(), ids.tolist(), strict=True))) == len(ids)  # distinct
    if t_proposal != 1.0:
        torch.testing.assert_close(raw["logprobs"], log_p[rows, ids])
        torch.testing.assert_close(raw["proposal_logprobs"], log_pi[rows, ids])
    expected = counts / 12 * (log_p - log_pi).exp()  # c / N * p / pi, dense [n_tokens, V]

    with TeacherCache.open(path) as cache:
        assert (cache.mode, cache.samples, cache.proposal_temperature) == (
            "sampled",
            12,
            t_proposal,
        )
        first = 0
        for index, seq in enumerate(sequences):
            got_ids, got_w = cache[index]
            dense = torch.zeros(len(seq), VOCAB).scatter_add(-1, got_ids, got_w)
            torch.testing.assert_close(dense, expected[first : first + len(seq)].float())
            first += len(seq)
        ids_b, w_b, mask = cache.get_batch([0, 3, 5])
    assert mask.tolist() == [
        [t < len(sequences[i]) for t in range(mask.shape[1])] for i in (0, 3, 5)
    ]
    assert bool((w_b[~mask] == 0).all())


def test_draws_follow_the_proposal_and_do_not_depend_on_batching(tmp_path: Path) -> None:
    # One context repeated: its draws over all positions must follow pi (binomial tolerance).
    sequences = [torch.full((50,), 7) for _ in range(8)]
    a = write(tmp_path / "a.safetensors", sequences=sequences, proposal_temperature=2.0)
    b = write(
        tmp_path / "b.safetensors",
        sequences=sequences,
        proposal_temperature=2.0,
        batch_size=5,
        chunk_size=2,
    )
    raw_a, raw_b = load_file(str(a)), load_file(str(b))
    for name in ("n_unique", "ids", "counts"):
        assert torch.equal(raw_a[name], raw_b[name])
    n = 8 * 50 * 12
    freq = (
        torch.zeros(VOCAB).index_add(0, raw_a["ids"].long(), raw_a["counts"].double().float()) / n
    )
    pi = torch.softmax(Bigram().table[7] / 2.0, -1)
    assert bool(((freq - pi).abs() <= 5 * (pi * (1 - pi) / n).sqrt() + 1e-6).all())
    c = write(tmp_path / "c.safetensors", sequences=sequences, proposal_temperature=2.0, seed=1)
    assert not torch.equal(load_file(str(c))["ids"], raw_a["ids"])  # the seed matters


def test_many_draws_give_the_dense_soft_cross_entropy(tmp_path: Path) -> None:
    teacher, sequences = Bigram(), corpus(n=4)
    path = write(tmp_path / "s.safetensors", teacher, sequences=sequences, samples=4000)
    with TeacherCache.open(path) as cache:
        ids, weights, mask = cache.get_batch(range(4))
    inputs = torch.zeros(mask.shape, dtype=torch.int64)
    for row, seq in enumerate(sequences):
        inputs[row, : len(seq)] = seq
    student = torch.randn(*mask.shape, VOCAB, generator=torch.Generator().manual_seed(2))
    sparse = sampled_kd_loss(student, ids, weights, mask)
    dense = REGISTRY["soft_cross_entropy"](student, teacher.table[inputs], mask)
    forward_kl = REGISTRY["forward_kl"](student, teacher.table[inputs], mask)
    assert abs(float(sparse - dense)) < 0.05
    assert abs(float(sparse - forward_kl)) > 0.3  # the teacher's entropy is there too


def test_resume_after_an_interruption_writes_the_same_file(tmp_path: Path) -> None:
    clean = write(tmp_path / "clean.safetensors", proposal_temperature=0.7)
    target = tmp_path / "resumed.safetensors"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        write(target, Bigram(fail_after=4), proposal_temperature=0.7)
    partial = tmp_path / "resumed.safetensors.partial"
    assert (
        not target.exists() and len(json.loads((partial / "state.json").read_text())["chunks"]) == 2
    )
    teacher = Bigram()
    write(target, teacher, proposal_temperature=0.7)
    assert teacher.calls == 3  # the two missing chunks only
    assert target.read_bytes() == clean.read_bytes() and not partial.exists()
    with pytest.raises(RuntimeError):
        write(tmp_path / "other.safetensors", Bigram(fail_after=2))
    with pytest.raises(ValueError, match="other settings"):
        write(tmp_path / "other.safetensors", seed=5)


def test_a_failure_while_merging_leaves_no_file_and_can_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "s.safetensors"
    real, calls = teacher_cache.tensor_bytes, []

    def failing(t: torch.Tensor) -> bytes:
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full (simulated)")
        return real(t)

    monkeypatch.setattr(teacher_cache, "tensor_bytes", failing)
    with pytest.raises(OSError, match="simulated"):
        write(target)
    assert not target.exists() and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(teacher_cache, "tensor_bytes", real)
    write(target)
    assert target.read_bytes() == write(tmp_path / "clean.safetensors").read_bytes()


def test_a_flipped_byte_fails_the_checksum_and_truncation_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "s.safetensors")
    start, _ = raw_header(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(TeacherCacheError, match="checksum mismatch"):
        TeacherCache.open(path)
    path.write_bytes(bytes(data[: (start + len(data)) // 2]))
    with pytest.raises(TeacherCacheError, match="truncated"):
        TeacherCache.open(path, verify=False)


def test_invalid_sampled_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs samples >= 1"):
        write(tmp_path / "a.safetensors", samples=None)
    with pytest.raises(ValueError, match="at most 32767"):
        write(tmp_path / "b.safetensors", samples=40000)
    with pytest.raises(ValueError, match="proposal_temperature must be finite"):
        write(tmp_path / "c.safetensors", proposal_temperature=0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        write(tmp_path / "d.safetensors", mode="dense")
