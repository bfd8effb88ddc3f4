"""Feature-level similarity functions (hidden states, MMD, attention KL).

Each function is compared with a float64 implementation written here with explicit loops over
tokens and hidden units, in value and gradient, and checked with ``gradcheck``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytest
import torch
from torch import Tensor, nn

from reference_impls.similarity import (
    attention_kl,
    feature_cross_entropy,
    hidden_cosine,
    hidden_l1,
    hidden_mse,
    mmd,
)

DT = torch.float64


def _sum(terms: Iterable[Tensor]) -> Tensor:
    """Sum of scalar tensors (typed replacement of the builtin ``sum``)."""
    return torch.stack(list(terms)).sum(0)


def _tokens(x: Tensor) -> list[Tensor]:
    return list(x.reshape(-1, x.shape[-1]))


def _per_token_reference(
    per_token: Callable[[Tensor, Tensor], Tensor],
) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """Token mean of ``per_token(s_vec, t_vec)`` over the counted tokens, by loops."""

    def loss(s: Tensor, t: Tensor, mask: Tensor | None) -> Tensor:
        keep = [True] * len(_tokens(s)) if mask is None else mask.reshape(-1).tolist()
        terms = [
            per_token(a, b.detach())
            for a, b, k in zip(_tokens(s), _tokens(t), keep, strict=True)
            if k
        ]
        return _sum(terms) / len(terms) if terms else s.sum() * 0.0

    return loss


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return _sum((a[h] - b[h]) ** 2 for h in range(a.shape[0])) / a.shape[0]


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return _sum(abs(a[h] - b[h]) for h in range(a.shape[0])) / a.shape[0]


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    dot = _sum(a[h] * b[h] for h in range(a.shape[0]))
    norm_a = torch.sqrt(_sum(a[h] ** 2 for h in range(a.shape[0])))
    norm_b = torch.sqrt(_sum(b[h] ** 2 for h in range(b.shape[0])))
    return 1.0 - dot / (norm_a * norm_b)


def _feature_ce_any(a: Tensor, b: Tensor) -> Tensor:
    z_a = _sum(torch.exp(a[h]) for h in range(a.shape[0]))
    z_b = _sum(torch.exp(b[h]) for h in range(b.shape[0]))
    return -_sum(
        torch.exp(b[h]) / z_b * torch.log(torch.exp(a[h]) / z_a) for h in range(a.shape[0])
    )


PAIRS: list[tuple[Callable[..., Tensor], Callable[[Tensor, Tensor], Tensor]]] = [
    (hidden_mse, _mse),
    (hidden_l1, _l1),
    (hidden_cosine, _cosine),
    (feature_cross_entropy, _feature_ce_any),
]
IDS = ["mse", "l1", "cosine", "feature_ce"]


def _value_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    leaf = x.detach().clone().requires_grad_(True)
    value = fn(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


@pytest.mark.parametrize(("fn", "per_token"), PAIRS, ids=IDS)
def test_token_similarity_matches_reference(
    fn: Callable[..., Tensor], per_token: Callable[[Tensor, Tensor], Tensor]
) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5, dtype=DT), torch.randn(2, 3, 5, dtype=DT)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    ref = _per_token_reference(per_token)
    for m in (None, mask):

        def loss(x: Tensor, m: Tensor | None = m) -> Tensor:
            return fn(x, t, m)

        def loss_ref(x: Tensor, m: Tensor | None = m) -> Tensor:
            return ref(x, t, m)

        value, grad = _value_and_grad(loss, s)
        value_ref, grad_ref = _value_and_grad(loss_ref, s)
        torch.testing.assert_close(value, value_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("fn", "per_token"), PAIRS, ids=IDS)
def test_token_similarity_projection(
    fn: Callable[..., Tensor], per_token: Callable[[Tensor, Tensor], Tensor]
) -> None:
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 4, dtype=DT), torch.randn(2, 3, 6, dtype=DT)
    w = torch.randn(4, 6, dtype=DT)
    projected = torch.stack(
        [
            torch.stack([_sum(s[b, i, h] * w[h] for h in range(4)) for i in range(3)])
            for b in range(2)
        ]
    )
    ref = _per_token_reference(per_token)(projected, t, None)
    torch.testing.assert_close(fn(s, t, projection=w), ref, rtol=1e-10, atol=1e-12)
    linear = nn.Linear(4, 6, bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(w.T)
    torch.testing.assert_close(fn(s, t, projection=linear), ref, rtol=1e-10, atol=1e-12)
    torch.autograd.backward(
        fn(s, t, projection=linear)
    )  # the projection is trained with the student
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projection"):
        fn(s, t)


@pytest.mark.parametrize("fn", [p[0] for p in PAIRS], ids=IDS)
def test_token_similarity_gradcheck_and_edges(fn: Callable[..., Tensor]) -> None:
    torch.manual_seed(2)
    s = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    t = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x: fn(x, t, mask), (s,))
    zero = fn(s, t, torch.zeros(2, 3, dtype=torch.bool))
    torch.autograd.backward(zero)
    assert zero.item() == 0.0
    assert s.grad is not None and torch.count_nonzero(s.grad) == 0
    assert t.grad is None  # teacher is a constant target
    with pytest.raises(ValueError, match="token dimensions"):
        fn(s, t[:, :2], None)
    with pytest.raises(ValueError, match="mask"):
        fn(s, t, mask[:, :2])
    assert fn(s.detach().half(), t.detach().half(), mask).dtype == torch.float32


def test_identical_hidden_states_give_zero_distance() -> None:
    x = torch.randn(4, 8, dtype=DT)
    for fn in (hidden_mse, hidden_l1, hidden_cosine):
        assert fn(x, x).item() == pytest.approx(0.0, abs=1e-12)
    assert hidden_cosine(x, 3.0 * x).item() == pytest.approx(0.0, abs=1e-12)
    assert hidden_cosine(x, -x).item() == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------- MMD


def _mmd_reference(x: list[Tensor], y: list[Tensor], bandwidths: tuple[float, ...]) -> Tensor:
    def k(a: Tensor, b: Tensor) -> Tensor:
        sq = _sum((a[h] - b[h]) ** 2 for h in range(a.shape[0]))
        return _sum(torch.exp(-sq / (2 * bw * bw)) for bw in bandwidths)

    m, n = len(x), len(y)
    xx = _sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = _sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = _sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_reference_value_and_grad() -> None:
    torch.manual_seed(3)
    bws = (0.5, 1.0, 2.0)
    s, t = torch.randn(2, 3, 4, dtype=DT), torch.randn(2, 3, 4, dtype=DT) + 0.5
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    value, grad = _value_and_grad(lambda x: mmd(x, t, mask, bandwidths=bws), s)
    keep = mask.reshape(-1).tolist()

    def ref(x: Tensor) -> Tensor:
        xs = [v for v, k in zip(_tokens(x), keep, strict=True) if k]
        ys = [v for v, k in zip(_tokens(t), keep, strict=True) if k]
        return _mmd_reference(xs, ys, bws)

    value_ref, grad_ref = _value_and_grad(ref, s)
    torch.testing.assert_close(value, value_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-12)


def test_mmd_sets_of_different_sizes_and_order_invariance() -> None:
    torch.manual_seed(4)
    s, t = torch.randn(5, 3, dtype=DT), torch.randn(2, 4, 3, dtype=DT)
    value = mmd(s, t)
    torch.testing.assert_close(value, _mmd_reference(_tokens(s), _tokens(t), (0.5, 1, 2, 4, 8)))
    torch.testing.assert_close(mmd(s[torch.randperm(5)], t.flip(1)), value)
    # far-apart distributions have a clearly larger discrepancy than two samples of one
    same = mmd(torch.randn(200, 3, dtype=DT), torch.randn(200, 3, dtype=DT))
    far = mmd(torch.randn(200, 3, dtype=DT), torch.randn(200, 3, dtype=DT) + 3.0)
    assert abs(same.item()) < 0.05 < far.item()


def test_mmd_gradcheck_projection_and_edges() -> None:
    torch.manual_seed(5)
    s = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    t = torch.randn(2, 3, 2, dtype=DT)
    w = torch.randn(4, 2, dtype=DT, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x, p: mmd(x, t, mask, projection=p), (s, w))
    with pytest.raises(ValueError, match="projection"):
        mmd(s, t)
    one = torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    zero = mmd(s, t, one, projection=w)  # a single vector per set: no unbiased estimate
    torch.autograd.backward(zero)
    assert zero.item() == 0.0
    assert s.grad is not None and torch.count_nonzero(s.grad) == 0
    with pytest.raises(ValueError, match="mask"):
        mmd(s, t, mask[:, :2], projection=w)
    assert mmd(s.detach().half(), t.half(), projection=w.detach()).dtype == torch.float32


# ------------------------------------------------------------------------------- attention KL


def _attention_kl_reference(s: Tensor, t: Tensor, mask: Tensor | None) -> Tensor:
    batch, heads, length, _ = s.shape
    terms = []
    for b in range(batch):
        for h in range(heads):
            for i in range(length):
                if mask is not None and not mask[b, i]:
                    continue
                row = [
                    t[b, h, i, j] * (torch.log(t[b, h, i, j]) - torch.log(s[b, h, i, j]))
                    for j in range(length)
                    if t[b, h, i, j] > 0
                ]
                terms.append(_sum(row))
    return _sum(terms) / len(terms)


def _attention(batch: int, heads: int, length: int, causal: bool) -> Tensor:
    scores = torch.randn(batch, heads, length, length, dtype=DT)
    if causal:
        upper = torch.ones(length, length, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(upper, float("-inf"))
    return scores.softmax(-1)


def test_attention_kl_matches_reference_value_and_grad() -> None:
    torch.manual_seed(6)
    s, t = _attention(2, 3, 4, causal=False), _attention(2, 3, 4, causal=True)  # t has zeros
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    for m in (None, mask):

        def loss(x: Tensor, m: Tensor | None = m) -> Tensor:
            return attention_kl(x, t, m)

        def loss_ref(x: Tensor, m: Tensor | None = m) -> Tensor:
            return _attention_kl_reference(x, t, m)

        value, grad = _value_and_grad(loss, s)
        value_ref, grad_ref = _value_and_grad(loss_ref, s)
        torch.testing.assert_close(value, value_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-12)


def test_attention_kl_zero_probabilities_are_safe() -> None:
    torch.manual_seed(7)
    causal = _attention(1, 2, 3, causal=True)
    assert attention_kl(causal, causal).item() == pytest.approx(0.0, abs=1e-12)
    # the student puts zero mass where the teacher has some: large but finite, finite grads
    s = causal.clone().requires_grad_(True)
    loss = attention_kl(s, causal.transpose(-1, -2).softmax(-1))
    torch.autograd.backward(loss)
    assert math.isfinite(loss.item()) and loss.item() > 10
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_attention_kl_gradcheck_and_edges() -> None:
    torch.manual_seed(8)
    s = _attention(2, 2, 3, causal=False).requires_grad_(True)
    t = _attention(2, 2, 3, causal=True).requires_grad_(True)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x: attention_kl(x, t, mask), (s,))
    zero = attention_kl(s, t, torch.zeros(2, 3, dtype=torch.bool))
    torch.autograd.backward(zero)
    assert zero.item() == 0.0
    assert s.grad is not None and torch.count_nonzero(s.grad) == 0 and t.grad is None
    with pytest.raises(ValueError, match=r"\[B, heads, T, T\]"):
        attention_kl(s, t[:, :1])
    with pytest.raises(ValueError, match="mask"):
        attention_kl(s, t, mask[:, :2])
    assert attention_kl(s.detach().half(), t.detach().half()).dtype == torch.float32
