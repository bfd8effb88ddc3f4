"""Tests of the training demos: ``python -m reference_impls.demos <name>`` and ``run_demo``.

Every loss's demo is executed for real in a subprocess on the CPU (concurrently, one per core)
and must train: the logged loss and the held-out KL(teacher || student) fall. In-process tests
cover determinism, devices, the package's loss attributes and the divergence formula.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import reference_impls
from reference_impls import REGISTRY, Kind
from reference_impls.demos import (
    BUILDERS,
    DemoConfig,
    build_task,
    divergence,
    main,
    resolve_device,
    run_demo,
    shard_indices,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reference_impls"
NAMES = sorted(REGISTRY)

#: Steps of the subprocess runs; REINFORCE with a sequence reward needs a few more.
SMOKE_STEPS = {"kl_regularized_pg_loss": 60}


def _smoke_steps(name: str) -> int:
    return SMOKE_STEPS.get(name, 30)


def _run_runner(name: str) -> subprocess.CompletedProcess[str]:
    steps = _smoke_steps(name)
    cmd = [sys.executable, "-m", "reference_impls.demos", name, "--device", "cpu", "--seed", "1"]
    cmd += ["--steps", str(steps), "--log-every", str(steps // 2)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runner_results(
    request: pytest.FixtureRequest,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the runners selected in this session concurrently, one subprocess per core."""
    wanted = sorted(
        {
            item.callspec.params["name"]
            for item in request.session.items
            if getattr(item, "originalname", None) == "test_runner_trains"
            and hasattr(item, "callspec")
        }
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(wanted, pool.map(_run_runner, wanted), strict=True))


def _parse_table(stdout: str) -> list[list[float]]:
    """Rows ``step, loss, KL[, extra]`` of the printed table."""
    rows = []
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            rows.append([float(f) for f in fields])
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_runner_trains(
    name: str, runner_results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """``python -m reference_impls.demos <name>`` exits 0 and its loss and divergence fall."""
    proc = runner_results[name]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{name} on cpu: ")
    assert "KL(teacher||student)" in lines[1]
    rows = _parse_table(proc.stdout)
    steps = _smoke_steps(name)
    assert [int(r[0]) for r in rows] == [0, steps // 2, steps]
    assert all(math.isfinite(v) for r in rows for v in r)
    first, last = rows[0], rows[-1]
    assert last[1] < first[1], f"loss did not fall: {rows}"
    if name == "bradley_terry_loss":
        # a reward model is trained, never the student: its divergence cannot move, while
        # the reward model learns to rank held-out pairs (extra column: pair accuracy)
        assert len({r[2] for r in rows}) == 1, rows
        assert last[3] > first[3] and last[3] >= 0.85, rows
    else:
        assert last[2] < first[2], f"KL(teacher||student) did not fall: {rows}"
    assert proc.stdout.rstrip().splitlines()[-1].startswith("done in ")


def test_no_module_shadows_a_loss_and_every_kind_has_a_demo() -> None:
    """No top-level module is named after a loss (no runner stubs); every kind has a builder."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert not modules & set(REGISTRY)
    assert not [
        p.name
        for p in PACKAGE.glob("*.py")
        if p.read_text(encoding="utf-8").startswith('"""Demo runner:')
    ]
    assert set(BUILDERS) == set(Kind)


@pytest.mark.parametrize("name", NAMES)
def test_package_attribute_is_the_registered_loss(name: str) -> None:
    """``reference_impls.<name>`` is the loss function, never a module of that name."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"reference_impls.{name}")
    assert f"reference_impls.{name}" not in sys.modules
    loss = getattr(reference_impls, name)
    assert loss is REGISTRY[name]
    assert callable(loss) and not isinstance(loss, type(reference_impls))


def test_unknown_loss_on_the_command_line_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no_such_loss"])
    assert exc.value.code == 2
    assert "no_such_loss" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["forward_kl", "minillm_loss", "rrhf_loss", "uld_loss"])
def test_same_seed_same_run(name: str) -> None:
    """Same seed: identical losses and divergences; another seed: a different run."""
    a = run_demo(name, steps=4, device="cpu", seed=3, log_every=2, quiet=True)
    b = run_demo(name, steps=4, device="cpu", seed=3, log_every=2, quiet=True)
    c = run_demo(name, steps=4, device="cpu", seed=4, log_every=2, quiet=True)
    assert a.steps == [0, 2, 4]
    assert len(a.losses) == len(a.divergences) == 3
    assert (a.losses, a.divergences) == (b.losses, b.divergences)
    assert a.losses != c.losses


def _check_trains_on(device: str) -> None:
    result = run_demo("forward_kl", steps=20, device=device, log_every=10, quiet=True)
    assert result.device.startswith(device)
    assert result.seconds > 0
    assert result.losses[-1] < 0.8 * result.losses[0]
    assert result.divergences[-1] < 0.8 * result.divergences[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda() -> None:
    _check_trains_on("cuda")


def test_trains_on_cpu() -> None:
    """CPU twin of :func:`test_trains_on_cuda`."""
    _check_trains_on("cpu")


def test_auto_device_picks_cuda_only_when_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_cuda_without_cuda_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="'cuda' requested but torch.cuda.is_available"):
        resolve_device("cuda")
    assert main(["forward_kl", "--device", "cuda", "--steps", "1"]) == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        run_demo("no_such_loss", steps=1, device="cpu", quiet=True)
    with pytest.raises(ValueError, match="device must be"):
        run_demo("forward_kl", steps=1, device="tpu", quiet=True)
    with pytest.raises(ValueError, match="steps must be"):
        run_demo("forward_kl", steps=0, device="cpu", quiet=True)


def test_divergence_is_teacher_to_student_kl_on_responses() -> None:
    """Against a uniform student the divergence is ``log V - H(p)`` averaged over responses."""
    cfg = DemoConfig()
    task = build_task("forward_kl", cfg, torch.device("cpu"), seed=0)
    inputs = task.eval_seqs[:, :-1]
    with torch.no_grad():
        p = task.teacher_logprobs(inputs).exp()[:, cfg.prompt_len :]  # response positions
    entropy = -(p * p.log()).sum(-1)
    expected = (math.log(cfg.vocab_size) - entropy).mean().item()

    uniform: Callable[[torch.Tensor], torch.Tensor] = lambda ids: torch.full(  # noqa: E731
        (*ids.shape, cfg.vocab_size), -math.log(cfg.vocab_size)
    )
    task.student_logprobs = uniform
    assert divergence(task, cfg) == pytest.approx(expected, rel=1e-5)
    task.student_logprobs = task.teacher_logprobs
    assert divergence(task, cfg) == pytest.approx(0.0, abs=1e-6)


def test_shards_partition_the_pool() -> None:
    shards = [shard_indices(10, rank, 3).tolist() for rank in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert shard_indices(5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="rank"):
        shard_indices(5, rank=3, world_size=3)
