"""Universal Logit Distillation: cross-tokenizer sorted-probability distance.

Compared with an explicit float64 implementation (Python loops for the alignment, the sort
and the zero padding), plus the properties that make ULD tokenizer-agnostic.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from reference_impls.uld import uld_loss

DT = torch.float64


def _sum(terms: Iterable[Tensor]) -> Tensor:
    """Sum of scalar tensors (typed replacement of the builtin ``sum``)."""
    return torch.stack(list(terms)).sum(0)


def _softmax_loop(z: Tensor, temperature: float) -> list[Tensor]:
    exps = [torch.exp(z[v] / temperature) for v in range(z.shape[0])]
    total = _sum(exps)
    return [e / total for e in exps]


def _sorted_desc(probs: list[Tensor]) -> list[Tensor]:
    order = sorted(range(len(probs)), key=lambda v: -probs[v].item())
    return [probs[v] for v in order]


def _uld_reference(
    s: Tensor, t: Tensor, s_mask: Tensor, t_mask: Tensor, temperature: float = 1.0
) -> Tensor:
    per_sample = []
    for b in range(s.shape[0]):
        s_pos = [i for i in range(s.shape[1]) if s_mask[b, i]]
        t_pos = [j for j in range(t.shape[1]) if t_mask[b, j]]
        pairs = list(zip(s_pos, t_pos, strict=False))  # truncates to the shorter
        if not pairs:
            continue
        dists = []
        for i, j in pairs:
            q = _sorted_desc(_softmax_loop(s[b, i], temperature))
            p = _sorted_desc(_softmax_loop(t[b, j].detach(), temperature))
            width = max(len(q), len(p))
            q += [torch.zeros((), dtype=DT)] * (width - len(q))
            p += [torch.zeros((), dtype=DT)] * (width - len(p))
            dists.append(_sum(torch.abs(qk - pk) for qk, pk in zip(q, p, strict=True)))
        per_sample.append(_sum(dists) / len(dists))
    return _sum(per_sample) / len(per_sample)


def _case() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    s = torch.randn(3, 5, 4, dtype=DT)  # V_s = 4
    t = torch.randn(3, 6, 7, dtype=DT)  # V_t = 7, different length
    s_mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]], dtype=torch.bool)
    t_mask = torch.tensor(
        [[1, 1, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )  # sample 2 has no teacher position: skipped
    return s, t, s_mask, t_mask


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_uld_matches_reference_value_and_grad(temperature: float) -> None:
    s, t, s_mask, t_mask = _case()
    leaf = s.clone().requires_grad_(True)
    value = uld_loss(leaf, t, s_mask, t_mask, temperature=temperature)
    (grad,) = torch.autograd.grad(value, leaf)
    leaf_ref = s.clone().requires_grad_(True)
    ref = _uld_reference(leaf_ref, t, s_mask, t_mask, temperature)
    (grad_ref,) = torch.autograd.grad(ref, leaf_ref)
    torch.testing.assert_close(value, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-12)
    assert torch.count_nonzero(grad[2]) == 0  # the skipped sample gets no gradient


def test_uld_teacher_bigger_or_smaller_vocabulary() -> None:
    s, t, s_mask, t_mask = _case()
    # swap roles: now the student has the larger vocabulary
    value = uld_loss(t, s, t_mask, s_mask)
    torch.testing.assert_close(value, _uld_reference(t, s, t_mask, s_mask))


def test_uld_gradcheck() -> None:
    s, t, s_mask, t_mask = _case()
    leaf = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: uld_loss(x, t, s_mask, t_mask), (leaf,))


def test_uld_value_by_hand() -> None:
    # student [0.5, 0.5], teacher [0.2, 0.1, 0.7] -> sorted [0.5, 0.5, 0] vs [0.7, 0.2, 0.1]
    s = torch.log(torch.tensor([[[0.5, 0.5]]], dtype=DT))
    t = torch.log(torch.tensor([[[0.2, 0.1, 0.7]]], dtype=DT))
    one = torch.ones(1, 1, dtype=torch.bool)
    assert uld_loss(s, t, one, one).item() == pytest.approx(0.2 + 0.3 + 0.1)


def test_uld_no_aligned_positions_is_zero_with_zero_grad() -> None:
    s, t, s_mask, _ = _case()
    leaf = s.clone().requires_grad_(True)
    loss = uld_loss(leaf, t, s_mask, torch.zeros(3, 6, dtype=torch.bool))
    torch.autograd.backward(loss)
    assert loss.item() == 0.0
    assert leaf.grad is not None and torch.count_nonzero(leaf.grad) == 0


def test_uld_teacher_is_constant_and_half_upcast() -> None:
    s, t, s_mask, t_mask = _case()
    leaf_t = t.clone().requires_grad_(True)
    leaf_s = s.clone().requires_grad_(True)
    torch.autograd.backward(uld_loss(leaf_s, leaf_t, s_mask, t_mask))
    assert leaf_t.grad is None and leaf_s.grad is not None
    out = uld_loss(s.half(), t.half(), s_mask, t_mask)
    assert out.dtype == torch.float32
    ref = _uld_reference(s.half().to(DT), t.half().to(DT), s_mask, t_mask)
    assert out.item() == pytest.approx(ref.item(), rel=1e-4)


def test_uld_errors() -> None:
    s, t, s_mask, t_mask = _case()
    with pytest.raises(ValueError, match="student_mask"):
        uld_loss(s, t, t_mask, t_mask)
    with pytest.raises(ValueError, match="teacher_mask"):
        uld_loss(s, t, s_mask, s_mask)
    with pytest.raises(ValueError, match="batch sizes"):
        uld_loss(s[:2], t, s_mask[:2], t_mask)
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        uld_loss(s[0], t, s_mask, t_mask)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), v_s=st.integers(2, 6), v_t=st.integers(2, 6))
def test_uld_ignores_token_identity(seed: int, v_s: int, v_t: int) -> None:
    """Permuting either vocabulary leaves the loss unchanged; equal sorted profiles give 0."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(2, 3, v_s, generator=gen, dtype=DT)
    t = torch.randn(2, 4, v_t, generator=gen, dtype=DT)
    s_mask = torch.rand(2, 3, generator=gen) > 0.3
    t_mask = torch.rand(2, 4, generator=gen) > 0.3
    base = uld_loss(s, t, s_mask, t_mask)
    permuted = uld_loss(
        s[..., torch.randperm(v_s, generator=gen)],
        t[..., torch.randperm(v_t, generator=gen)],
        s_mask,
        t_mask,
    )
    torch.testing.assert_close(base, permuted)
    assert base.item() >= 0.0
    same = uld_loss(s, s[..., torch.randperm(v_s, generator=gen)], s_mask, s_mask)
    assert same.item() == pytest.approx(0.0, abs=1e-12)
