"""Sequence-level losses: SFT, rationale SFT, DPO, Bradley-Terry, KL-regularised PG, MiniLLM.

Every loss is compared with an independent float64 implementation written here from the
formula (explicit loops), in value and gradient. The two policy-gradient surrogates are also
checked against exact expectations: on tiny autoregressive models every sequence is enumerated
and the probability-weighted gradient of the surrogate must equal the autograd gradient of the
true objective.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import pytest
import torch
from torch import Tensor

from reference_impls.minillm import minillm_loss
from reference_impls.policy_gradient import kl_regularized_pg_loss
from reference_impls.preference import bradley_terry_loss, dpo_loss
from reference_impls.sft import rationale_sft_loss, sft_loss

DT = torch.float64


def _sum(terms: Iterable[Tensor]) -> Tensor:
    """Sum of scalar tensors (typed replacement of the builtin ``sum``)."""
    return torch.stack(list(terms)).sum(0)


def _grads(fn: Callable[..., Tensor], *inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Value and gradients of ``fn`` at fresh float64 leaf copies of ``inputs``."""
    leaves = [x.detach().clone().to(DT).requires_grad_(True) for x in inputs]
    value = fn(*leaves)
    return value.detach(), list(torch.autograd.grad(value, leaves))


def _assert_same(fn_a: Callable[..., Tensor], fn_b: Callable[..., Tensor], *inputs: Tensor) -> None:
    va, ga = _grads(fn_a, *inputs)
    vb, gb = _grads(fn_b, *inputs)
    torch.testing.assert_close(va, vb, rtol=1e-10, atol=1e-12)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _log_softmax_loop(z: Tensor) -> list[Tensor]:
    """log softmax of a 1-D tensor, written as log(exp(z_v) / sum_u exp(z_u))."""
    total = _sum(torch.exp(z[u]) for u in range(z.shape[0]))
    return [torch.log(torch.exp(z[v]) / total) for v in range(z.shape[0])]


# --------------------------------------------------------------------------------------- SFT


def _sft_reference(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    flat_z, flat_y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    terms = [
        -_log_softmax_loop(flat_z[i])[int(flat_y[i])]
        for i in range(flat_y.shape[0])
        if int(flat_y[i]) != ignore_index
    ]
    return _sum(terms) / len(terms) if terms else logits.sum() * 0.0


def test_sft_matches_reference_value_and_grad() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, dtype=DT)
    targets = torch.tensor([[1, 4, -100, 0], [-100, 2, 3, 3]])
    _assert_same(lambda z: sft_loss(z, targets), lambda z: _sft_reference(z, targets), logits)
    # a custom ignore_index
    targets7 = targets.masked_fill(targets == -100, 7)
    _assert_same(
        lambda z: sft_loss(z, targets7, ignore_index=7),
        lambda z: _sft_reference(z, targets7, ignore_index=7),
        logits,
    )


def test_sft_value_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=DT)
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2  # -log 1/2 and -log 3/4
    assert sft_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(expected)


def test_sft_all_ignored_is_zero_with_zero_grad() -> None:
    logits = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    loss = sft_loss(logits, torch.full((2, 3), -100))
    torch.autograd.backward(loss)
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_sft_errors() -> None:
    with pytest.raises(ValueError, match="target_ids"):
        sft_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        sft_loss(torch.randn(2, 3, 4), torch.full((2, 3), 4))


def test_sft_half_input_upcast() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 6, 11)
    targets = torch.randint(0, 11, (3, 6))
    out = sft_loss(logits.half(), targets)
    assert out.dtype == torch.float32
    ref = _sft_reference(logits.half().to(DT), targets)
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)


def test_rationale_sft_matches_reference() -> None:
    torch.manual_seed(2)
    label_z, rat_z = torch.randn(2, 2, 5, dtype=DT), torch.randn(2, 6, 5, dtype=DT)
    label_y = torch.tensor([[3, -100], [1, 0]])
    rat_y = torch.tensor([[0, 1, 2, 3, 4, -100], [-100, -100, 4, 4, 1, 2]])

    def reference(lz: Tensor, rz: Tensor) -> Tensor:
        return _sft_reference(lz, label_y) + 0.3 * _sft_reference(rz, rat_y)

    def loss(lz: Tensor, rz: Tensor) -> Tensor:
        return rationale_sft_loss(lz, label_y, rz, rat_y, rationale_weight=0.3)

    _assert_same(loss, reference, label_z, rat_z)


def test_sft_gradcheck() -> None:
    torch.manual_seed(3)
    targets = torch.tensor([[1, -100, 2], [0, 3, 3]])
    lz = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    rz = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: sft_loss(z, targets), (lz,))
    assert torch.autograd.gradcheck(
        lambda a, b: rationale_sft_loss(a, targets, b, targets, rationale_weight=2.0), (lz, rz)
    )


# -------------------------------------------------------------------------- DPO, Bradley-Terry


def _neg_log_sigmoid(x: Tensor) -> Tensor:
    return torch.log(1.0 + torch.exp(-x))


def test_dpo_matches_reference() -> None:
    torch.manual_seed(4)
    pc, pr, rc, rr = (torch.randn(5, dtype=DT) * 3 for _ in range(4))

    def reference(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
        terms = [_neg_log_sigmoid(0.5 * ((a[i] - c[i]) - (b[i] - d[i]))) for i in range(5)]
        return _sum(terms) / 5

    def dpo(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
        return dpo_loss(a, b, c, d, beta=0.5)

    _assert_same(dpo, reference, pc, pr, rc, rr)
    leaves = tuple(x.clone().requires_grad_(True) for x in (pc, pr, rc, rr))
    assert torch.autograd.gradcheck(dpo, leaves)


def test_dpo_is_stable_for_large_margins() -> None:
    zero = torch.zeros(2)
    big = torch.tensor([1e4, -1e4], requires_grad=True)
    loss = dpo_loss(big, zero, zero, zero, beta=1.0)
    torch.autograd.backward(loss)
    assert loss.item() == pytest.approx(1e4 / 2)  # (0 + 1e4) / 2
    assert big.grad is not None
    torch.testing.assert_close(big.grad, torch.tensor([0.0, -0.5]))


def test_dpo_zero_margin_is_log2() -> None:
    x = torch.randn(3)
    assert dpo_loss(x, x, x, x).item() == pytest.approx(math.log(2.0))


def test_bradley_terry_matches_reference() -> None:
    torch.manual_seed(5)
    c, r = torch.randn(6, dtype=DT), torch.randn(6, dtype=DT)
    _assert_same(
        bradley_terry_loss,
        lambda a, b: _sum(_neg_log_sigmoid(a[i] - b[i]) for i in range(6)) / 6,
        c,
        r,
    )
    assert torch.autograd.gradcheck(
        bradley_terry_loss, (c.clone().requires_grad_(True), r.clone().requires_grad_(True))
    )


def test_preference_errors_and_half() -> None:
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    out = bradley_terry_loss(torch.ones(2, dtype=torch.bfloat16), torch.zeros(2).half())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


# ------------------------------------------------------------ tiny autoregressive tabular models

VOCAB, LENGTH, EOS = 3, 3, 0
PREFIXES = [p for n in range(LENGTH) for p in itertools.product(range(VOCAB), repeat=n)]
ROW = {p: i for i, p in enumerate(PREFIXES)}


def _sequences(with_eos: bool) -> list[tuple[int, ...]]:
    """All outcomes: every length-3 string, or strings that stop at their first EOS token."""
    full = list(itertools.product(range(VOCAB), repeat=LENGTH))
    if not with_eos:
        return full
    out = set()
    for y in full:
        stop = y.index(EOS) + 1 if EOS in y else LENGTH
        out.add(y[:stop])
    return sorted(out)


def _step_logits(table: Tensor, y: tuple[int, ...]) -> Tensor:
    """``[1, LENGTH, V]`` logits of ``table`` along ``y``; padding rows reuse row 0 (ignored)."""
    rows = [table[ROW[y[:t]]] if t < len(y) else table[0] for t in range(LENGTH)]
    return torch.stack(rows).unsqueeze(0)


def _padded(y: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    ids = torch.tensor([list(y) + [2] * (LENGTH - len(y))])
    mask = torch.tensor([[t < len(y) for t in range(LENGTH)]])
    return ids, mask


def _seq_logprob(table: Tensor, y: tuple[int, ...]) -> Tensor:
    return _sum(_log_softmax_loop(table[ROW[y[:t]]])[y[t]] for t in range(len(y)))


def _expected_surrogate_grad(
    table: Tensor, sequences: list[tuple[int, ...]], loss_of: Callable[[tuple[int, ...]], Tensor]
) -> Tensor:
    """sum_y q(y) * grad loss(y): the exact expectation of the surrogate's gradient."""
    weighted = _sum(torch.exp(_seq_logprob(table, y)).detach() * loss_of(y) for y in sequences)
    (grad,) = torch.autograd.grad(weighted, table)
    return grad


@pytest.mark.parametrize("with_eos", [False, True])
def test_pg_expected_gradient_equals_true_objective_gradient(with_eos: bool) -> None:
    torch.manual_seed(6)
    table = torch.randn(len(PREFIXES), VOCAB, dtype=DT, requires_grad=True)
    ref_table = torch.randn(len(PREFIXES), VOCAB, dtype=DT)
    sequences = _sequences(with_eos)
    reward = {y: float(torch.randn(())) for y in sequences}
    kl_coef = 0.7

    # True objective J = E_q[r] - beta KL(q || ref), by enumeration.
    q = {y: torch.exp(_seq_logprob(table, y)) for y in sequences}
    assert _sum(q.values()).item() == pytest.approx(1.0)
    objective = _sum(
        q[y] * (reward[y] - kl_coef * (_seq_logprob(table, y) - _seq_logprob(ref_table, y)))
        for y in sequences
    )
    (true_grad,) = torch.autograd.grad(objective, table)

    def loss_of(y: tuple[int, ...]) -> Tensor:
        ids, mask = _padded(y)
        logps = _step_logits(table, y).log_softmax(-1).gather(-1, ids.unsqueeze(-1))[..., 0]
        ref_logps = _step_logits(ref_table, y).log_softmax(-1).gather(-1, ids.unsqueeze(-1))
        rewards = torch.tensor([reward[y]], dtype=DT)
        return kl_regularized_pg_loss(logps, ref_logps[..., 0], rewards, mask, kl_coef=kl_coef)

    expected = _expected_surrogate_grad(table, sequences, loss_of)
    torch.testing.assert_close(expected, -true_grad, rtol=1e-9, atol=1e-12)


def _pg_reference(
    logps: Tensor, ref_logps: Tensor, rewards: Tensor, mask: Tensor, kl_coef: float
) -> Tensor:
    batch, length = logps.shape
    total = logps.sum() * 0.0
    for b in range(batch):
        for t in range(length):
            if not mask[b, t]:
                continue
            penalty = sum(
                (logps[b, u] - ref_logps[b, u]).item() for u in range(t, length) if mask[b, u]
            )
            total = total - (rewards[b].item() - kl_coef * penalty) * logps[b, t]
    return total / batch


def test_pg_matches_reference_value_and_grad() -> None:
    torch.manual_seed(7)
    logps = -torch.rand(3, 5, dtype=DT) * 3
    ref_logps = -torch.rand(3, 5, dtype=DT) * 3
    rewards = torch.randn(3, dtype=DT)
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    _assert_same(
        lambda lp: kl_regularized_pg_loss(lp, ref_logps, rewards, mask, kl_coef=0.2),
        lambda lp: _pg_reference(lp, ref_logps, rewards, mask, 0.2),
        logps,
    )
    # garbage (even infinite) values at masked positions do not leak into the loss
    noisy = logps.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(
        kl_regularized_pg_loss(noisy, ref_logps, rewards, mask, kl_coef=0.2),
        kl_regularized_pg_loss(logps, ref_logps, rewards, mask, kl_coef=0.2),
    )


def test_pg_gradcheck_and_edges() -> None:
    # With kl_coef = 0 the returns do not depend on logps, so the surrogate is an ordinary
    # function and gradcheck applies (for kl_coef > 0 the stop-gradient makes the analytic
    # gradient differ from the finite difference by design; it is checked above instead).
    torch.manual_seed(8)
    logps = (-torch.rand(2, 4, dtype=DT)).requires_grad_(True)
    ref, rewards = -torch.rand(2, 4, dtype=DT), torch.randn(2, dtype=DT)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.autograd.gradcheck(
        lambda lp: kl_regularized_pg_loss(lp, ref, rewards, mask, kl_coef=0.0), (logps,)
    )
    none = torch.zeros(2, 4, dtype=torch.bool)
    zero = kl_regularized_pg_loss(logps, ref, rewards, none, kl_coef=0.5)
    torch.autograd.backward(zero)
    assert zero.item() == 0.0
    assert logps.grad is not None and torch.count_nonzero(logps.grad) == 0
    with pytest.raises(ValueError, match="rewards"):
        kl_regularized_pg_loss(logps, ref, torch.zeros(3), mask, kl_coef=0.1)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        kl_regularized_pg_loss(logps, ref[:, :3], rewards, mask, kl_coef=0.1)
    half = kl_regularized_pg_loss(logps.detach().half(), ref, rewards, mask, kl_coef=0.1)
    assert half.dtype == torch.float32


# ------------------------------------------------------------------------------------ MiniLLM


@pytest.mark.parametrize("with_eos", [False, True])
def test_minillm_expected_gradient_equals_sequence_kl_gradient(with_eos: bool) -> None:
    torch.manual_seed(9)
    student = torch.randn(len(PREFIXES), VOCAB, dtype=DT, requires_grad=True)
    teacher = torch.randn(len(PREFIXES), VOCAB, dtype=DT)
    sequences = _sequences(with_eos)

    # Exact sequence-level KL(q || p) = sum_y q(y) log(q(y) / p(y)), by enumeration.
    kl = _sum(
        torch.exp(_seq_logprob(student, y)) * (_seq_logprob(student, y) - _seq_logprob(teacher, y))
        for y in sequences
    )
    assert kl.item() > 0.01
    (true_grad,) = torch.autograd.grad(kl, student)

    def loss_of(y: tuple[int, ...]) -> Tensor:
        ids, mask = _padded(y)
        return minillm_loss(
            _step_logits(student, y),
            _step_logits(teacher, y),
            ids,
            mask,
            gamma=1.0,
            length_norm=False,
            reduction="sum",
        )

    expected = _expected_surrogate_grad(student, sequences, loss_of)
    torch.testing.assert_close(expected, true_grad, rtol=1e-9, atol=1e-12)


def test_minillm_without_single_step_term_would_be_biased() -> None:
    """Sanity check of the test above: dropping the closed-form step term breaks the identity."""
    torch.manual_seed(9)
    student = torch.randn(len(PREFIXES), VOCAB, dtype=DT, requires_grad=True)
    teacher = torch.randn(len(PREFIXES), VOCAB, dtype=DT)
    sequences = _sequences(False)
    kl = _sum(
        torch.exp(_seq_logprob(student, y)) * (_seq_logprob(student, y) - _seq_logprob(teacher, y))
        for y in sequences
    )
    (true_grad,) = torch.autograd.grad(kl, student)

    def long_term_only(y: tuple[int, ...]) -> Tensor:
        ids, mask = _padded(y)
        s, t = _step_logits(student, y), _step_logits(teacher, y)
        single = (s.softmax(-1) * (s.log_softmax(-1) - t.log_softmax(-1))).sum()
        return minillm_loss(s, t, ids, mask, length_norm=False, reduction="sum") - single

    biased = _expected_surrogate_grad(student, sequences, long_term_only)
    assert (biased - true_grad).abs().max() > 1e-3


def _minillm_reference(
    s: Tensor,
    t: Tensor,
    ids: Tensor,
    mask: Tensor,
    gamma: float,
    length_norm: bool,
    reduction: str,
) -> Tensor:
    batch, length, _ = s.shape
    total, count = s.sum() * 0.0, 0
    for b in range(batch):
        log_q = [_log_softmax_loop(s[b, i]) for i in range(length)]
        log_p = [_log_softmax_loop(t[b, i]) for i in range(length)]
        r = [(log_p[i][int(ids[b, i])] - log_q[i][int(ids[b, i])]).item() for i in range(length)]
        for i in range(length):
            if not mask[b, i]:
                continue
            count += 1
            kl = _sum(torch.exp(lq) * (lq - lp) for lq, lp in zip(log_q[i], log_p[i], strict=True))
            later = [u for u in range(i + 1, length) if mask[b, u]]
            future = sum(gamma ** (u - i) * r[u] for u in later)
            if length_norm and later:
                future /= len(later)
            total = total + kl - future * log_q[i][int(ids[b, i])]
    return total if reduction == "sum" else total / max(count, 1)


@pytest.mark.parametrize(
    ("gamma", "length_norm", "reduction"),
    [(1.0, False, "sum"), (0.9, True, "mean"), (0.5, False, "mean"), (1.0, True, "sum")],
)
def test_minillm_matches_reference(gamma: float, length_norm: bool, reduction: str) -> None:
    torch.manual_seed(10)
    s, t = torch.randn(2, 5, 4, dtype=DT), torch.randn(2, 5, 4, dtype=DT)
    ids = torch.randint(0, 4, (2, 5))
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 1, 1]], dtype=torch.bool)
    _assert_same(
        lambda x: minillm_loss(
            x, t, ids, mask, gamma=gamma, length_norm=length_norm, reduction=reduction
        ),
        lambda x: _minillm_reference(x, t, ids, mask, gamma, length_norm, reduction),
        s,
    )


def test_minillm_gradcheck_edges_and_teacher_is_constant() -> None:
    torch.manual_seed(11)
    s = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    t = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    ids = torch.randint(0, 4, (2, 3))
    # One counted token per sequence: no later reward, so no stop-gradient and the surrogate
    # is an ordinary function (the full KL of that step), which gradcheck can verify.
    single = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x: minillm_loss(x, t, ids, single), (s,))

    loss = minillm_loss(s, t, ids, torch.ones(2, 3, dtype=torch.bool))
    torch.autograd.backward(loss)
    assert t.grad is None and s.grad is not None

    s.grad = None
    zero = minillm_loss(s, t, ids, torch.zeros(2, 3, dtype=torch.bool))
    torch.autograd.backward(zero)
    assert zero.item() == 0.0
    assert s.grad is not None and torch.count_nonzero(s.grad) == 0

    out = minillm_loss(s.detach().bfloat16(), t.detach().bfloat16(), ids, single)
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        minillm_loss(s, t[..., :3], ids, single)
    with pytest.raises(ValueError, match="sampled_ids"):
        minillm_loss(s, t, ids[:, :2], single)
    with pytest.raises(ValueError, match="reduction"):
        minillm_loss(s, t, ids, single, reduction="none")
