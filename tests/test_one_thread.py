"""The shared autouse fixture of ``conftest.py`` gives every torch test one intra-op thread."""

from __future__ import annotations

import torch


def test_torch_tests_run_on_one_thread() -> None:
    assert torch.get_num_threads() == 1
