"""Random student/teacher logits and a mask, shared by the tests of the token-level losses."""

from __future__ import annotations

import torch
from torch import Tensor


def make_batch(seed: int, shape: tuple[int, ...] = (2, 3, 5)) -> tuple[Tensor, Tensor, Tensor]:
    """Student and teacher logits (float64) and a mask with counted and ignored tokens."""
    gen = torch.Generator().manual_seed(seed)
    student = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
    teacher = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.rand(shape[:-1], generator=gen) < 0.6
    mask.view(-1)[0], mask.view(-1)[-1] = True, False
    return student, teacher, mask
