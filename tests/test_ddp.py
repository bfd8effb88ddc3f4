"""Data-parallel training: the demo loop and the zoo under ``torchrun`` equal a single process.

``python -m torch.distributed.run --nproc_per_node=2 --standalone`` launches 2 CPU processes
(gloo); each computes on its half of every global batch and DDP averages the gradients. With
the same global batch the trained student must equal a single-process run up to float32
rounding. In-process tests cover what needs no second process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reference_impls.demos.loop as loop
from reference_impls.demos import (
    DemoConfig,
    DistContext,
    build_student,
    build_task,
    dist_context,
    distributed,
    main,
    run_demo,
    shard_indices,
    train_loop,
)
from reference_impls.zoo import ZooConfig, run_zoo

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run`` of this interpreter (not a ``torchrun`` on PATH)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "--standalone", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _table(stdout: str) -> list[list[float]]:
    return [
        [float(f) for f in line.split()]
        for line in stdout.splitlines()
        if line.split() and line.split()[0].isdigit()
    ]


def _key_bias(d_model: int) -> slice:
    """Where the key bias sits in ``qkv.bias`` (the q, k, v blocks follow each other)."""
    return slice(d_model, 2 * d_model)


def _check_demo_matches(device: str, nproc: int, tmp_path: Path) -> None:
    ddp_file, single_file = tmp_path / "ddp.pt", tmp_path / "single.pt"
    args = ["--steps", "10", "--log-every", "5", "--device", device, "--save", str(ddp_file)]
    proc = _torchrun(["-m", "reference_impls.demos", "forward_kl", *args], nproc)
    assert proc.returncode == 0, proc.stderr
    # only rank 0 logs: one header, one table, one summary
    assert proc.stdout.count("forward_kl on ") == 1, proc.stdout
    assert proc.stdout.count("done in ") == 1
    if nproc > 1:
        assert f"({nproc} ranks, DDP)" in proc.stdout
    single = run_demo(
        "forward_kl", steps=10, log_every=5, device=device, quiet=True, save=single_file
    )
    assert single.world_size == 1
    # the logged losses are averaged over the ranks: the table is the single-process one
    rows = _table(proc.stdout)
    assert [int(r[0]) for r in rows] == single.steps == [0, 5, 10]
    for row, loss, kl in zip(rows, single.losses, single.divergences, strict=True):
        assert row[1] == pytest.approx(loss, abs=2e-4)
        assert row[2] == pytest.approx(kl, abs=2e-4)

    a = torch.load(ddp_file, map_location="cpu")
    b = torch.load(single_file, map_location="cpu")
    assert a.keys() == b.keys()
    cfg = DemoConfig()
    for name in a:
        x, y = a[name], b[name]
        if name.endswith("attn.qkv.bias"):
            # The key bias adds q.b_k to every score of a row, which softmax ignores: its exact
            # gradient is 0, so Adam's normalised update turns rounding noise into arbitrary
            # steps there. It is compared through the model's output below instead.
            keep = torch.ones_like(x, dtype=torch.bool)
            keep[_key_bias(cfg.d_student)] = False
            x, y = x[keep], y[keep]
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0, msg=name)
    untrained = build_task("forward_kl", cfg, torch.device("cpu"), seed=0)
    assert untrained.module is not None
    assert not torch.equal(a["head.weight"], untrained.module.state_dict()["head.weight"])

    inputs = untrained.eval_seqs[:, :-1]
    logits = []
    for state in (a, b):
        student = build_student(cfg, torch.device("cpu"))
        student.load_state_dict(state)
        with torch.no_grad():
            logits.append(student(inputs).logits)
        # and the claim behind the exception: moving the key bias leaves the output unchanged
        with torch.no_grad():
            bias = "blocks.0.attn.qkv.bias"
            student.state_dict()[bias][_key_bias(cfg.d_student)] += 1.0  # shares storage
            assert not torch.equal(student.state_dict()[bias], state[bias])
            moved = student(inputs).logits
        torch.testing.assert_close(moved, logits[-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=0)


def test_torchrun_demo_matches_single_process_on_cpu(tmp_path: Path) -> None:
    """2 gloo ranks x 16 sequences == 1 process x 32 sequences, step for step."""
    _check_demo_matches("cpu", 2, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchrun_demo_matches_single_process_on_cuda(tmp_path: Path) -> None:
    """GPU twin of the CPU test: nccl, one GPU per rank (1 rank on a single-GPU machine)."""
    _check_demo_matches("cuda", min(2, torch.cuda.device_count()), tmp_path)


def test_torchrun_zoo_matches_single_process(tmp_path: Path) -> None:
    args = ["--losses", "forward_kl", "sft_loss", "--seeds", "1", "--steps", "30"]
    proc = _torchrun(
        ["-m", "reference_impls.zoo", *args, "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    )
    assert proc.returncode == 0, proc.stderr
    ddp = json.loads((tmp_path / "zoo.json").read_text(encoding="utf-8"))
    assert ddp["world_size"] == 2
    single = run_zoo(
        ("forward_kl", "sft_loss"),
        (0,),
        config=dataclasses.replace(ZooConfig(), steps=30),
        device="cpu",
        progress=False,
    )
    assert single["world_size"] == 1
    for loss in ("forward_kl", "sft_loss"):
        got, want = ddp["results"][loss]["runs"][0], single["results"][loss]["runs"][0]
        for key, value in want["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (loss, key)
        assert got["curve"]["train_loss"] == pytest.approx(want["curve"]["train_loss"], rel=1e-4)


# ------------------------------------------------------------------------ single process


def test_global_batch_must_split_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 3 ranks a batch of 32 cannot give every rank the same number of tokens."""
    task = build_task("forward_kl", DemoConfig(n_train=32, n_eval=8), torch.device("cpu"), 0)
    monkeypatch.setattr(loop, "dist_context", lambda: DistContext(rank=0, world_size=3))
    with pytest.raises(ValueError, match="divisible by the world size 3"):
        train_loop(task, steps=1, batch_size=32, lr=1e-2, seed=0)


def test_rank_shards_of_a_batch_partition_it() -> None:
    """The rows the ranks compute on are the global batch, each row on exactly one rank."""
    for world in (1, 2, 4):
        shards = [shard_indices(32, r, world).tolist() for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(32))
        assert {len(s) for s in shards} == {32 // world}


def test_outside_torchrun_distributed_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with distributed(torch.device("cpu")) as device:
        assert device == torch.device("cpu")
        assert not torch.distributed.is_initialized()
        assert dist_context() == DistContext()


def test_train_loop_reports_step_time_and_gradient_norms() -> None:
    task = build_task("forward_kl", DemoConfig(n_train=32, n_eval=8), torch.device("cpu"), 0)
    logged: list[tuple[int, float]] = []
    stats = train_loop(
        task,
        steps=6,
        batch_size=8,
        lr=1e-2,
        seed=0,
        log_every=3,
        on_log=lambda step, loss: logged.append((step, loss)),
        record_grad_norms=True,
    )
    assert [s for s, _ in logged] == [0, 3, 6]
    assert stats.steps == 6 and len(stats.grad_norms) == 6
    assert all(g > 0 for g in stats.grad_norms)
    assert stats.seconds > 0 and stats.seconds_per_step == pytest.approx(stats.seconds / 6)


def test_save_writes_the_trained_student(tmp_path: Path) -> None:
    path = tmp_path / "student.pt"
    run_demo("sft_loss", steps=2, device="cpu", quiet=True, save=path)
    state = torch.load(path)
    student = build_student(DemoConfig(), torch.device("cpu"))
    student.load_state_dict(state)  # the keys and shapes of the demo student
    assert main(["sft_loss", "--steps", "1", "--device", "cpu", "--save", str(path)]) == 0
