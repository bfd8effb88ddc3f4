"""Sampled-logit KD (Sparse Logit Sampling): unbiasedness by enumeration, limits, conventions.

The references never call the estimator under test for the expectations: the probability of
each outcome of ``N`` draws is the multinomial law written out here, the dense targets are
``softmax``/``log_softmax`` of the teacher, and the numbers of the worked example
(p = [.7, .2, .1], q = [.5, .3, .2]) come from ``kd-formulas-2025.md`` (computed with numpy).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from reference_impls import REGISTRY
from reference_impls.topk import importance_weights, sampled_kd_loss, teacher_sample

P = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
Q = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


def outcomes(probs: Tensor, n: int) -> list[tuple[Tensor, float]]:
    """Every count vector of ``n`` draws from ``probs`` with its multinomial probability."""
    vocab = len(probs)
    result = []
    for draws in itertools.combinations_with_replacement(range(vocab), n):
        counts = torch.bincount(torch.tensor(draws), minlength=vocab)
        ways = math.factorial(n) / math.prod(math.factorial(int(c)) for c in counts)
        result.append((counts, ways * float(torch.prod(probs**counts))))
    return result


def proposal(p: Tensor, t_proposal: float) -> Tensor:
    tempered = p ** (1 / t_proposal)
    return tempered / tempered.sum(-1, keepdim=True)


def expectations(
    p: Tensor, student: Tensor, n: int, t_proposal: float, temperature: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """E[weights], E[loss] and E[d loss / d logits] over every outcome of ``n`` draws."""
    pi = proposal(p, t_proposal)
    ids = torch.arange(len(p))
    mean_w = torch.zeros_like(p)
    mean_loss = torch.zeros((), dtype=torch.float64)
    mean_grad = torch.zeros_like(p)
    for counts, prob in outcomes(pi, n):
        lp, lpi = (p.log(), pi.log()) if t_proposal != 1.0 else (None, None)
        weights = importance_weights(counts, n, lp, lpi, dtype=torch.float64)
        z = student.clone().requires_grad_()
        loss = sampled_kd_loss(z[None], ids[None], weights[None], temperature=temperature)
        loss.backward()
        assert z.grad is not None
        mean_w += prob * weights
        mean_loss += prob * loss.detach()
        mean_grad += prob * z.grad
    return mean_w, mean_loss, mean_grad


@pytest.mark.parametrize("t_proposal", [1.0, 2.0, 0.5])
def test_expected_target_is_the_teacher_and_expected_gradient_is_q_minus_p(
    t_proposal: float,
) -> None:
    z = Q.log()  # student logits whose softmax is Q
    mean_w, mean_loss, mean_grad = expectations(P, z, n=5, t_proposal=t_proposal)
    torch.testing.assert_close(mean_w, P, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mean_grad, Q - P, rtol=1e-12, atol=1e-14)
    # the reference file's numbers: E[CE] = -sum p log q = 0.886941, gradient [-.2, .1, .1]
    assert float(mean_loss) == pytest.approx(0.886941, abs=1e-6)
    torch.testing.assert_close(mean_grad, torch.tensor([-0.2, 0.1, 0.1], dtype=torch.float64))


def test_expected_gradient_at_a_training_temperature_is_the_tempered_dense_one() -> None:
    gen = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(4, generator=gen, dtype=torch.float64), -1)
    z = torch.randn(4, generator=gen, dtype=torch.float64)
    _, _, mean_grad = expectations(p, z, n=4, t_proposal=1.5, temperature=2.0)
    torch.testing.assert_close(
        mean_grad, (torch.softmax(z / 2.0, -1) - p) / 2.0, rtol=1e-12, atol=0
    )


def test_top_k_renormalised_gradient_is_the_biased_one_of_the_reference_file() -> None:
    # The contrast the method rests on: the top-2 renormalised target gives the gradient
    # [-0.278, 0.078, 0.2] where the true (and the sampled one in expectation) is [-.2, .1, .1].
    z = Q.log().clone().requires_grad_()
    ids, logprobs = torch.tensor([[0, 1]]), P.log()[None, :2]
    REGISTRY["topk_forward_kl"](z[None], ids, logprobs, tail="renormalize").backward()
    assert z.grad is not None
    expected = torch.tensor([-0.277778, 0.077778, 0.2], dtype=torch.float64)
    torch.testing.assert_close(z.grad, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("t_proposal", [1.0, 2.0])
def test_many_draws_approach_dense_forward_kl_plus_teacher_entropy(t_proposal: float) -> None:
    gen = torch.Generator().manual_seed(0)
    teacher = 2 * torch.randn(6, 12, generator=gen, dtype=torch.float64)
    student = 2 * torch.randn(6, 12, generator=gen, dtype=torch.float64)
    n = 20000
    drawn = teacher_sample(teacher, n, proposal_temperature=t_proposal, generator=gen)
    weights = torch.zeros(6, 12, dtype=torch.float64)
    rows = torch.repeat_interleave(torch.arange(6), drawn.n_unique)
    lps = (drawn.logprobs, drawn.proposal_logprobs) if t_proposal != 1.0 else (None, None)
    weights[rows, drawn.ids] = importance_weights(drawn.counts, n, *lps).double()
    ids = torch.arange(12).expand(6, 12)
    estimate = sampled_kd_loss(student, ids, weights)
    log_p, log_q = teacher.log_softmax(-1), student.log_softmax(-1)
    p = log_p.exp()
    dense = REGISTRY["forward_kl"](student, teacher) - (p * log_p).sum(-1).mean()
    # tolerance: 5 standard errors of the mean of -log q(v) under importance sampling
    pi = proposal(p, t_proposal)
    second = ((p / pi) ** 2 * pi * log_q**2).sum(-1)
    std_err = ((second - (p * log_q).sum(-1) ** 2).clamp(min=0) / n).sum().sqrt() / 6
    assert abs(float(estimate - dense)) < 5 * float(std_err), (estimate, dense, std_err)
    assert float(std_err) < 0.01, std_err  # the check is tight enough to mean something


def test_teacher_sample_draws_from_the_tempered_proposal() -> None:
    gen = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    n = 40000
    drawn = teacher_sample(teacher, n, temperature=1.3, proposal_temperature=2.0, generator=gen)
    assert drawn.counts.sum() == 2 * n
    rows = torch.repeat_interleave(torch.arange(2), drawn.n_unique)
    freq = torch.zeros(2, 7, dtype=torch.float64)
    freq[rows, drawn.ids] = drawn.counts.double() / n
    log_p = torch.log_softmax(teacher / 1.3, -1)
    pi = torch.softmax(teacher / 2.6, -1)
    tol = 5 * (pi * (1 - pi) / n).sqrt()
    assert bool(((freq - pi).abs() <= tol).all()), (freq, pi)
    torch.testing.assert_close(drawn.logprobs, log_p[rows, drawn.ids])
    torch.testing.assert_close(drawn.proposal_logprobs, pi.log()[rows, drawn.ids])
    for row in range(2):  # distinct ids, ascending, per token
        own = drawn.ids[rows == row]
        assert bool((own.diff() > 0).all())


# ---------------------------------------------------------------------------- conventions
def reference_loss(z: Tensor, ids: Tensor, w: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """-sum_j w_j (z_j / T - log sum_v exp(z_v / T)), mean over counted tokens, by loops."""
    total, count = 0.0, 0
    flat_z, flat_i, flat_w = (
        z.reshape(-1, z.shape[-1]),
        ids.reshape(-1, ids.shape[-1]),
        w.reshape(-1, w.shape[-1]),
    )
    for t, keep in enumerate(mask.reshape(-1).tolist()):
        if not keep:
            continue
        scaled = [float(v) / temperature for v in flat_z[t]]
        top = max(scaled)
        log_norm = top + math.log(sum(math.exp(v - top) for v in scaled))
        total -= sum(
            float(wj) * (scaled[int(i)] - log_norm)
            for i, wj in zip(flat_i[t], flat_w[t], strict=True)
        )
        count += 1
    return torch.tensor(total / max(count, 1), dtype=torch.float64)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_float64_value_matches_an_independent_formula(temperature: float) -> None:
    gen = torch.Generator().manual_seed(5)
    z = 3 * torch.randn(2, 4, 9, generator=gen, dtype=torch.float64)
    ids = torch.randint(9, (2, 4, 5), generator=gen)
    w = torch.rand(2, 4, 5, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, 4, generator=gen) > 0.3
    got = sampled_kd_loss(z, ids, w, mask, temperature=temperature)
    assert got.dtype == torch.float64
    torch.testing.assert_close(
        got, reference_loss(z, ids, w, mask, temperature), rtol=1e-12, atol=1e-12
    )


def test_extreme_logits_stay_finite() -> None:
    gen = torch.Generator().manual_seed(6)
    z = (1e4 * torch.sign(torch.randn(3, 11, generator=gen))).requires_grad_()
    ids = torch.randint(11, (3, 4), generator=gen)
    loss = sampled_kd_loss(z, ids, torch.full((3, 4), 0.25))
    loss.backward()
    assert z.grad is not None
    assert math.isfinite(float(loss.detach())) and bool(z.grad.isfinite().all())


def test_bfloat16_inputs_give_a_float32_loss() -> None:
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(2, 3, 10, generator=gen).bfloat16()
    ids = torch.randint(10, (2, 3, 4), generator=gen)
    w = torch.full((2, 3, 4), 0.25).bfloat16()
    assert sampled_kd_loss(z, ids, w).dtype == torch.float32


def test_all_masked_gives_zero_with_zero_gradient() -> None:
    z = torch.randn(2, 3, 8, requires_grad=True)
    ids = torch.full((2, 3, 2), 99)  # out of range but masked: ignored
    w = torch.full((2, 3, 2), float("nan"))
    loss = sampled_kd_loss(z, ids, w, torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert z.grad is not None
    assert float(loss.detach()) == 0.0 and bool((z.grad == 0).all())


def test_weights_are_constants_and_gradient_is_weight_sum_times_q_minus_weights() -> None:
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(1, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[4, 1, 4]])  # a repeated id adds its weights
    w = torch.tensor([[0.5, 0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    sampled_kd_loss(z, ids, w).backward()
    assert w.grad is None and z.grad is not None
    target = torch.zeros(1, 6, dtype=torch.float64)
    target[0, 4], target[0, 1] = 0.9, 0.3
    expected = 1.2 * torch.softmax(z.detach(), -1) - target
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=1e-14)


def test_bad_inputs_are_rejected_with_a_clear_error() -> None:
    z = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, V=5\)"):
        sampled_kd_loss(z, torch.tensor([[0], [5]]), torch.ones(2, 1))
    with pytest.raises(ValueError, match="finite and >= 0"):
        sampled_kd_loss(z, torch.zeros(2, 1, dtype=torch.long), torch.tensor([[1.0], [-0.1]]))
    with pytest.raises(ValueError, match="student's token shape"):
        sampled_kd_loss(z, torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1))
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        sampled_kd_loss(z, torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="both logprobs and proposal_logprobs"):
        importance_weights(torch.ones(3), 3, torch.zeros(3))
    with pytest.raises(ValueError, match="samples must be >= 1"):
        teacher_sample(z, 0)
