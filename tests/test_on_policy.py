"""On-policy distillation: the OPD surrogate, Schulman's KL estimators, Speculative KD sampling.

The surrogate's expected gradient is computed exactly by enumerating every sequence of tiny
tabular autoregressive models and compared with the autograd gradient of the objective it
claims to follow; values and gradients are also compared with a loop implementation written
here from the formula. The estimators are checked by enumeration against the exact KL, and the
sampler's empirical frequencies against its exact one-step law.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import pytest
import torch
from torch import Tensor

from reference_impls import kl_estimators, speculative_kd_sample
from reference_impls.on_policy import opd_policy_gradient_loss

DT = torch.float64
VOCAB, LENGTH, EOS = 3, 3, 0
PREFIXES = [p for n in range(LENGTH) for p in itertools.product(range(VOCAB), repeat=n)]
ROW = {p: i for i, p in enumerate(PREFIXES)}
#: The reference document's worked example (teacher p, student q) and its numbers.
P_REF, Q_REF = [0.7, 0.2, 0.1], [0.5, 0.3, 0.2]
RKL_REF, K2_REF = 0.092033, 0.101009
RKL_GRAD_REF = [-0.214253, 0.094030, 0.120223]


def _sum(terms: Iterable[Tensor]) -> Tensor:
    return torch.stack(list(terms)).sum(0)


def _sequences(with_eos: bool) -> list[tuple[int, ...]]:
    """Every length-3 string, or the strings that stop at their first EOS token."""
    full = list(itertools.product(range(VOCAB), repeat=LENGTH))
    if not with_eos:
        return full
    return sorted({y[: y.index(EOS) + 1] if EOS in y else y for y in full})


def _log_q(table: Tensor, prefix: tuple[int, ...]) -> Tensor:
    return table[ROW[prefix]].log_softmax(-1)


def _seq_logprob(table: Tensor, y: tuple[int, ...]) -> Tensor:
    return _sum(_log_q(table, y[:t])[y[t]] for t in range(len(y)))


def _batch_of(
    student: Tensor, teacher: Tensor, y: tuple[int, ...]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``[1, LENGTH, V]`` student logits, ids, teacher log-probs and mask along ``y`` (padded)."""
    rows = [student[ROW[y[:t]]] if t < len(y) else student[0] for t in range(LENGTH)]
    ids = torch.tensor([list(y) + [2] * (LENGTH - len(y))])
    log_p = [
        _log_q(teacher, y[:t])[y[t]] if t < len(y) else torch.tensor(-math.inf, dtype=DT)
        for t in range(LENGTH)
    ]
    mask = torch.tensor([[t < len(y) for t in range(LENGTH)]])
    return torch.stack(rows).unsqueeze(0), ids, torch.stack(log_p).unsqueeze(0), mask


def _expected_grad(
    student: Tensor, sequences: list[tuple[int, ...]], loss_of: Callable[[tuple[int, ...]], Tensor]
) -> Tensor:
    """sum_y q(y) grad loss(y): the exact expectation of the surrogate's gradient."""
    weighted = _sum(torch.exp(_seq_logprob(student, y)).detach() * loss_of(y) for y in sequences)
    (grad,) = torch.autograd.grad(weighted, student)
    return grad


def _tables(seed: int) -> tuple[Tensor, Tensor]:
    torch.manual_seed(seed)
    student = torch.randn(len(PREFIXES), VOCAB, dtype=DT, requires_grad=True)
    return student, torch.randn(len(PREFIXES), VOCAB, dtype=DT)


def _token_kl(student: Tensor, teacher: Tensor, prefix: tuple[int, ...]) -> Tensor:
    log_q, log_p = _log_q(student, prefix), _log_q(teacher, prefix)
    return (log_q.exp() * (log_q - log_p)).sum()


# ------------------------------------------------------------------ the OPD surrogate, exactly


@pytest.mark.parametrize("with_eos", [False, True])
def test_zero_discount_expected_gradient_is_per_token_reverse_kl_at_fixed_prefixes(
    with_eos: bool,
) -> None:
    student, teacher = _tables(1)
    sequences = _sequences(with_eos)
    coef = 0.7
    # sum_t KL(q || p)(c_t) along each sequence, weighted by the (constant) sequence probability
    target = _sum(
        torch.exp(_seq_logprob(student, y)).detach()
        * _sum(_token_kl(student, teacher, y[:t]) for t in range(len(y)))
        for y in sequences
    )
    (want,) = torch.autograd.grad(target, student)

    def loss_of(y: tuple[int, ...]) -> Tensor:
        s, ids, log_p, mask = _batch_of(student, teacher, y)
        return opd_policy_gradient_loss(s, ids, log_p, mask, coef=coef, reduction="sum")

    got = _expected_grad(student, sequences, loss_of)
    assert want.abs().max() > 1e-2
    torch.testing.assert_close(got, coef * want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("with_eos", [False, True])
def test_unit_discount_expected_gradient_is_sequence_reverse_kl(with_eos: bool) -> None:
    student, teacher = _tables(2)
    sequences = _sequences(with_eos)
    kl = _sum(
        torch.exp(_seq_logprob(student, y)) * (_seq_logprob(student, y) - _seq_logprob(teacher, y))
        for y in sequences
    )
    (want,) = torch.autograd.grad(kl, student)

    def loss_of(y: tuple[int, ...]) -> Tensor:
        s, ids, log_p, mask = _batch_of(student, teacher, y)
        return opd_policy_gradient_loss(s, ids, log_p, mask, discount=1.0, reduction="sum")

    torch.testing.assert_close(
        _expected_grad(student, sequences, loss_of), want, rtol=1e-9, atol=1e-12
    )


def test_zero_discount_misses_the_credit_for_later_tokens() -> None:
    """The two identities differ: discount 0 does not follow the sequence-level KL."""
    student, teacher = _tables(2)
    sequences = _sequences(False)
    kl = _sum(
        torch.exp(_seq_logprob(student, y)) * (_seq_logprob(student, y) - _seq_logprob(teacher, y))
        for y in sequences
    )
    (sequence_grad,) = torch.autograd.grad(kl, student)

    def loss_of(y: tuple[int, ...]) -> Tensor:
        s, ids, log_p, mask = _batch_of(student, teacher, y)
        return opd_policy_gradient_loss(s, ids, log_p, mask, reduction="sum")

    assert (_expected_grad(student, sequences, loss_of) - sequence_grad).abs().max() > 1e-3


def test_token_mean_is_exact_up_to_the_count_for_fixed_length_samples() -> None:
    """Without EOS every sample counts LENGTH tokens: the mean is the sum over LENGTH."""
    student, teacher = _tables(3)
    sequences = _sequences(False)

    def loss_of(reduction: str) -> Callable[[tuple[int, ...]], Tensor]:
        def f(y: tuple[int, ...]) -> Tensor:
            s, ids, log_p, mask = _batch_of(student, teacher, y)
            return opd_policy_gradient_loss(s, ids, log_p, mask, discount=1.0, reduction=reduction)

        return f

    mean = _expected_grad(student, sequences, loss_of("mean"))
    total = _expected_grad(student, sequences, loss_of("sum"))
    torch.testing.assert_close(mean, total / LENGTH, rtol=1e-9, atol=1e-12)


def test_one_step_expected_gradient_matches_the_reference_numbers() -> None:
    """E_{y~q}[grad of the surrogate] in logit space is grad RKL (numbers computed elsewhere)."""
    z = torch.tensor(Q_REF, dtype=DT).log().requires_grad_(True)
    log_p = torch.tensor(P_REF, dtype=DT).log()
    total = _sum(
        Q_REF[y]
        * opd_policy_gradient_loss(z.view(1, 1, 3), torch.tensor([[y]]), log_p[y].view(1, 1))
        for y in range(3)
    )
    (grad,) = torch.autograd.grad(total, z)
    torch.testing.assert_close(grad, torch.tensor(RKL_GRAD_REF, dtype=DT), rtol=0, atol=2e-6)


# ------------------------------------------------------------ against a loop implementation


def _opd_reference(
    s: Tensor,
    ids: Tensor,
    log_p: Tensor,
    mask: Tensor,
    old: Tensor,
    discount: float,
    coef: float,
    reduction: str,
) -> Tensor:
    batch, length, _ = s.shape
    total, count = s.sum() * 0.0, 0
    for b in range(batch):
        rewards = [float(log_p[b, k] - old[b, k]) if mask[b, k] else 0.0 for k in range(length)]
        for t in range(length):
            if not mask[b, t]:
                continue
            count += 1
            advantage = coef * sum(discount ** (k - t) * rewards[k] for k in range(t, length))
            log_q_y = s[b, t, int(ids[b, t])] - torch.logsumexp(s[b, t], 0)
            total = total - torch.exp(log_q_y - old[b, t]) * advantage
    return total if reduction == "sum" else total / max(count, 1)


@pytest.mark.parametrize(
    ("discount", "coef", "reduction"),
    [(0.0, 1.0, "mean"), (0.5, 2.0, "mean"), (1.0, 0.3, "sum"), (0.9, 1.0, "sum")],
)
def test_matches_a_loop_implementation_with_old_logprobs(
    discount: float, coef: float, reduction: str
) -> None:
    torch.manual_seed(4)
    s = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    ids = torch.randint(0, 4, (2, 5))
    log_p = -torch.rand(2, 5, dtype=DT) * 3
    old = -torch.rand(2, 5, dtype=DT) * 3
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    kw = {"discount": discount, "coef": coef, "reduction": reduction}
    got = opd_policy_gradient_loss(s, ids, log_p, mask, old_logprobs=old, **kw)  # type: ignore[arg-type]
    want = _opd_reference(s, ids, log_p, mask, old, discount, coef, reduction)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g_got,) = torch.autograd.grad(got, s)
    (g_want,) = torch.autograd.grad(want, s)
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)


def test_on_policy_default_is_the_current_student_detached() -> None:
    """old_logprobs=None equals passing the student's own log-probs of the samples."""
    torch.manual_seed(5)
    s = torch.randn(2, 4, 5, dtype=DT, requires_grad=True)
    ids, log_p = torch.randint(0, 5, (2, 4)), -torch.rand(2, 4, dtype=DT) * 2
    own = s.detach().log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    a = opd_policy_gradient_loss(s, ids, log_p, discount=0.8)
    b = opd_policy_gradient_loss(s, ids, log_p, old_logprobs=own, discount=0.8)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad(a, s)[0], torch.autograd.grad(b, s)[0])
    # at theta = theta_old the value is -mean advantage: every ratio is 1
    rewards = log_p - own
    adv = torch.stack([rewards[:, t:] @ (0.8 ** torch.arange(4 - t, dtype=DT)) for t in range(4)])
    torch.testing.assert_close(a.detach(), -adv.mean())


# ------------------------------------------------------------------------------- conventions


def test_conventions_teacher_and_old_detached_mask_dtype_edges() -> None:
    torch.manual_seed(6)
    s = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    log_p = (-torch.rand(2, 3, dtype=DT)).requires_grad_(True)
    old = (-torch.rand(2, 3, dtype=DT)).requires_grad_(True)
    ids = torch.randint(0, 4, (2, 3))
    loss = opd_policy_gradient_loss(s, ids, log_p, old_logprobs=old, discount=0.5)
    assert loss.dtype == DT
    torch.autograd.backward(loss)
    assert log_p.grad is None and old.grad is None and s.grad is not None

    # masked positions: garbage ids and infinite log-probs never leak in
    mask = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    clean = opd_policy_gradient_loss(s, ids, log_p, mask, discount=0.5)
    noisy = opd_policy_gradient_loss(
        s,
        ids.masked_fill(~mask, -100),
        log_p.masked_fill(~mask, -math.inf),
        mask,
        discount=0.5,
    )
    torch.testing.assert_close(clean, noisy)
    assert torch.isfinite(torch.autograd.grad(noisy, s)[0]).all()

    s.grad = None
    zero = opd_policy_gradient_loss(s, ids, log_p, torch.zeros(2, 3, dtype=torch.bool))
    torch.autograd.backward(zero)
    assert zero.item() == 0.0 and s.grad is not None and torch.count_nonzero(s.grad) == 0
    empty = opd_policy_gradient_loss(
        torch.zeros(0, 3, 4), torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3)
    )
    assert empty.item() == 0.0

    half = opd_policy_gradient_loss(s.detach().bfloat16(), ids, log_p.detach().bfloat16())
    assert half.dtype == torch.float32
    torch.testing.assert_close(
        half, opd_policy_gradient_loss(s, ids, log_p).float(), atol=0.05, rtol=0.05
    )


def test_finite_at_extreme_logits() -> None:
    s = torch.tensor([[[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[[-1e4, 1e4, 0.0], [1e4, -1e4, 0.0]]]).log_softmax(-1)
    ids = torch.tensor([[1, 0]])  # improbable under the student: log q = -2e4
    log_p = teacher.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    for discount in (0.0, 1.0):
        loss = opd_policy_gradient_loss(s, ids, log_p, discount=discount)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_bad_inputs_are_named() -> None:
    s, ids, lp = torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"student_logits must be \[B, T, V\]"):
        opd_policy_gradient_loss(s[0], ids, lp)
    with pytest.raises(ValueError, match="sampled_ids"):
        opd_policy_gradient_loss(s, ids[:, :2], lp)
    with pytest.raises(ValueError, match="teacher_logprobs"):
        opd_policy_gradient_loss(s, ids, lp[:1])
    with pytest.raises(ValueError, match="old_logprobs"):
        opd_policy_gradient_loss(s, ids, lp, old_logprobs=lp[:, :1])
    with pytest.raises(ValueError, match="discount"):
        opd_policy_gradient_loss(s, ids, lp, discount=1.5)
    with pytest.raises(ValueError, match="reduction"):
        opd_policy_gradient_loss(s, ids, lp, reduction="none")
    with pytest.raises(TypeError, match="bool"):
        opd_policy_gradient_loss(s, ids, lp, torch.ones(2, 3))


# ---------------------------------------------------------------------------- KL estimators


def test_k1_and_k3_are_unbiased_and_k2_is_biased() -> None:
    q, p = torch.tensor(Q_REF, dtype=DT), torch.tensor(P_REF, dtype=DT)
    exact = float((q * (q / p).log()).sum())
    assert exact == pytest.approx(RKL_REF, abs=1e-6)
    est = kl_estimators(q.log(), p.log())  # one entry per possible sample y
    assert float((q * est.k1).sum()) == pytest.approx(exact, rel=1e-12)
    assert float((q * est.k3).sum()) == pytest.approx(exact, rel=1e-12)
    assert float((q * est.k2).sum()) == pytest.approx(K2_REF, abs=1e-6)
    assert abs(float((q * est.k2).sum()) - exact) > 5e-3
    assert (est.k3 >= 0).all() and (est.k2 >= 0).all()


def test_differentiating_k3_gives_the_forward_kl_gradient_not_the_reverse() -> None:
    q, p = torch.tensor(Q_REF, dtype=DT), torch.tensor(P_REF, dtype=DT)
    z = q.log().requires_grad_(True)
    log_q = z.log_softmax(-1)
    est = kl_estimators(log_q, p.log())
    # expected sample mean: samples y ~ q held fixed, so the weights q(y) are constants
    (g3,) = torch.autograd.grad((q * est.k3).sum(), z, retain_graph=True)
    (g1,) = torch.autograd.grad((q * est.k1).sum(), z)
    torch.testing.assert_close(g3, q - p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, torch.zeros(3, dtype=DT), rtol=0, atol=1e-12)
    reverse = torch.tensor(RKL_GRAD_REF, dtype=DT)
    assert (g3 - reverse).abs().max() > 1e-2


def test_estimator_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="logq"):
        kl_estimators(torch.zeros(3), torch.zeros(2))


# ---------------------------------------------------------------------- Speculative KD sampling


def _speculative_law(q: Tensor, p: Tensor, top_k: int) -> Tensor:
    """P(y) = q(y) 1[y in TopK(p)] + (sum_{y' not in TopK} q(y')) p(y), by enumeration."""
    top = set(sorted(range(len(p)), key=lambda v: -float(p[v]))[:top_k])
    rejected = sum(float(q[v]) for v in range(len(q)) if v not in top)
    return torch.tensor([float(q[y]) * (y in top) + rejected * float(p[y]) for y in range(len(p))])


def test_speculative_law_reference_numbers_and_limits() -> None:
    q, p = torch.tensor(Q_REF), torch.tensor(P_REF)
    torch.testing.assert_close(_speculative_law(q, p, 2), torch.tensor([0.64, 0.34, 0.02]))
    torch.testing.assert_close(_speculative_law(q, p, 3), q)
    torch.testing.assert_close(_speculative_law(q, p, 0), p)


@pytest.mark.parametrize("top_k", [0, 2, 4, 6])
def test_sampler_frequencies_match_the_exact_law(top_k: int) -> None:
    torch.manual_seed(7)
    n = 200_000
    s_logits, t_logits = torch.randn(6) * 1.5, torch.randn(6) * 2.0
    law = _speculative_law(s_logits.softmax(-1), t_logits.softmax(-1), top_k)
    gen = torch.Generator().manual_seed(11)
    ids = speculative_kd_sample(
        s_logits.expand(n, 6), t_logits.expand(n, 6), top_k=top_k, generator=gen
    )
    assert ids.shape == (n,)
    freq = torch.bincount(ids, minlength=6).double() / n
    sigma = (law.double() * (1 - law.double()) / n).sqrt()
    assert ((freq - law.double()).abs() <= 5 * sigma + 1e-12).all(), (freq, law)


def test_sampler_shapes_and_errors() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = speculative_kd_sample(torch.randn(2, 3, 5), torch.randn(2, 3, 5), top_k=2, generator=gen)
    assert ids.shape == (2, 3) and ids.dtype == torch.long
    with pytest.raises(ValueError, match="top_k"):
        speculative_kd_sample(torch.randn(5), torch.randn(5), top_k=6, generator=gen)
    with pytest.raises(ValueError, match="share one"):
        speculative_kd_sample(torch.randn(5), torch.randn(4), top_k=1, generator=gen)
