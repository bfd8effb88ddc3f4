"""Ranking losses RRHF (survey Eq. 15) and PRO (survey Eq. 16) against explicit loop formulas."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from reference_impls.ranking import pro_loss, rrhf_loss

DT = torch.float64


def _sum(terms: Iterable[Tensor]) -> Tensor:
    """Sum of scalar tensors (typed replacement of the builtin ``sum``)."""
    return torch.stack(list(terms)).sum(0)


def _rrhf_reference(
    p: Tensor, r: Tensor, best_nll: Tensor | None = None, sft_weight: float = 1.0
) -> Tensor:
    batch, n = p.shape
    total = p.sum() * 0.0
    for b in range(batch):
        for i in range(n):
            for j in range(n):
                if r[b, i] < r[b, j] and p[b, i] > p[b, j]:
                    total = total + (p[b, i] - p[b, j])
    total = total / batch
    if best_nll is not None:
        total = total + sft_weight * _sum(best_nll[b] for b in range(batch)) / batch
    return total


def _pro_reference(p: Tensor) -> Tensor:
    batch, n = p.shape
    total = p.sum() * 0.0
    for b in range(batch):
        for k in range(n - 1):
            denominator = _sum(torch.exp(p[b, i]) for i in range(k, n))
            total = total - torch.log(torch.exp(p[b, k]) / denominator)
    return total / batch


def _value_and_grads(
    fn: Callable[..., Tensor], *inputs: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


def test_rrhf_matches_reference() -> None:
    torch.manual_seed(0)
    p = torch.randn(3, 4, dtype=DT)
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.1, 2.0], [3.0, 1.0, 1.0, 1.0]], dtype=DT)
    nll = torch.rand(3, dtype=DT) * 4
    for w in (1.0, 0.3):
        v, g = _value_and_grads(lambda a, c, w=w: rrhf_loss(a, r, best_nll=c, sft_weight=w), p, nll)
        v_ref, g_ref = _value_and_grads(lambda a, c, w=w: _rrhf_reference(a, r, c, w), p, nll)
        torch.testing.assert_close(v, v_ref, rtol=1e-10, atol=1e-12)
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    v, g = _value_and_grads(lambda a: rrhf_loss(a, r), p)
    v_ref, g_ref = _value_and_grads(lambda a: _rrhf_reference(a, r), p)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(g[0], g_ref[0])


def test_rrhf_by_hand_and_ties() -> None:
    p = torch.tensor([[-1.0, -2.0, -0.5]])
    r = torch.tensor([[0.0, 1.0, 1.0]])  # responses 1 and 2 tie: no constraint between them
    # pairs (0 < 1): max(0, -1 + 2) = 1; (0 < 2): max(0, -1 + 0.5) = 0
    assert rrhf_loss(p, r).item() == pytest.approx(1.0)
    two = rrhf_loss(p, r, best_nll=torch.tensor([2.0]), sft_weight=0.5)
    assert two.item() == pytest.approx(2.0)
    correctly_ordered = torch.tensor([[-3.0, -1.0, -2.0]])
    assert rrhf_loss(correctly_ordered, torch.tensor([[0.0, 2.0, 1.0]])).item() == 0.0


def test_rrhf_gradcheck_and_errors() -> None:
    torch.manual_seed(1)
    p = torch.randn(2, 4, dtype=DT, requires_grad=True)
    nll = torch.rand(2, dtype=DT, requires_grad=True)
    r = torch.randn(2, 4, dtype=DT)
    assert torch.autograd.gradcheck(
        lambda a, c: rrhf_loss(a, r, best_nll=c, sft_weight=0.7), (p, nll)
    )
    with pytest.raises(ValueError, match=r"\[B, n\]"):
        rrhf_loss(p, r[:, :3])
    with pytest.raises(ValueError, match="best_nll"):
        rrhf_loss(p, r, best_nll=torch.zeros(3))
    assert rrhf_loss(p.detach().half(), r.half()).dtype == torch.float32


def test_pro_matches_reference() -> None:
    torch.manual_seed(2)
    p = torch.randn(3, 5, dtype=DT) * 2
    v, g = _value_and_grads(pro_loss, p)
    v_ref, g_ref = _value_and_grads(_pro_reference, p)
    torch.testing.assert_close(v, v_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g[0], g_ref[0], rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(pro_loss, (p.clone().requires_grad_(True),))


def test_pro_two_responses_is_bradley_terry() -> None:
    p = torch.tensor([[0.3, -1.2], [-2.0, 1.0]], dtype=DT)
    expected = sum(math.log(1 + math.exp(-(a - b))) for a, b in p.tolist()) / 2
    assert pro_loss(p).item() == pytest.approx(expected)


def test_pro_stable_and_errors() -> None:
    big = torch.tensor([[-1000.0, -1001.0, -5000.0]], dtype=DT)  # naive exp underflows to 0 / 0
    expected = math.log(1 + math.exp(-1.0))  # k = 1; k = 2 term is ~exp(-3999) ~ 0
    assert pro_loss(big).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="n >= 2"):
        pro_loss(torch.zeros(2, 1))
    with pytest.raises(ValueError, match="n >= 2"):
        pro_loss(torch.zeros(4))
    assert pro_loss(torch.zeros(2, 3).bfloat16()).dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-50, 50), n=st.integers(2, 6))
def test_pro_shift_invariant_and_nonnegative(seed: int, shift: float, n: int) -> None:
    """Adding a constant to every score leaves the Plackett-Luce likelihood unchanged."""
    p = torch.randn(2, n, dtype=DT, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(pro_loss(p + shift), pro_loss(p))
    assert pro_loss(p).item() >= 0.0
