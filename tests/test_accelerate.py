"""DistillationTrainer under ``accelerate launch``: 2 CPU processes equal 1, same global batch.

``accelerate launch --multi_gpu --num_processes 2`` on a machine without CUDA starts two
processes through ``torch.distributed.run``; the Trainer then trains with DDP over gloo. (The
``--cpu`` flag with several processes goes through ``mpirun`` instead, which this machine has
not.) Each process takes 4 sequences of every global batch of 8 and DDP averages the
gradients; the toy sequences all count the same number of tokens, so the mean of the two
halves' token means is the single process's token mean and the trained students must agree
to float32 rounding.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

from reference_impls.integrations import tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_two_process_accelerate_run_matches_single_process(tmp_path: Path) -> None:
    ddp_file, single_file = tmp_path / "ddp.pt", tmp_path / "single.pt"
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
    ]  # fmt: skip
    script = ["-m", "reference_impls.integrations", "generalized_jsd", "--param", "beta=0.5",
              "--fused", "--ragged", "--steps", "5", "--batch-size", "4",
              "--save", str(ddp_file)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [*launch, *script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("(2 process(es), 5 steps)") == 1, proc.stdout  # rank 0 reports

    single = tiny.run_tiny_hf_demo(
        "generalized_jsd", 5, loss_params={"beta": 0.5}, fused=True, batch_size=8, ragged=True,
        save=single_file,
    )  # fmt: skip
    assert single["world_size"] == 1
    a = torch.load(ddp_file, map_location="cpu")
    b = torch.load(single_file, map_location="cpu")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=0, msg=name)
    untrained = tiny.tiny_causal_lm("llama").state_dict()
    assert not torch.allclose(a["lm_head.weight"], untrained["lm_head.weight"], atol=1e-4)
