"""ABKD's alpha-beta divergence against formulas written out here, its limits and special cases.

The reference evaluates the general closed form of Cichocki, Cruces and Amari with explicit
powers of softmax probabilities (no ``reference_impls``); the limit branches are checked
against it just off the singular set; known divergences (forward and reverse KL, Hellinger)
are written out by hand; the numbers of the shared reference sheet pin the values.
"""

from __future__ import annotations

import math

import logit_batches
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from reference_impls.abkd import ab_divergence

P = [0.7, 0.2, 0.1]
Q = [0.5, 0.3, 0.2]


def make_batch(seed: int, shape: tuple[int, ...] = (2, 3, 6)) -> tuple[Tensor, Tensor, Tensor]:
    """The shared batch, over a vocabulary of 6 by default."""
    return logit_batches.make_batch(seed, shape)


def general_ab(p: Tensor, q: Tensor, a: float, b: float) -> Tensor:
    """The general closed form per token, alpha, beta, alpha + beta all nonzero."""
    s = a + b
    return -(p**a * q**b - a / s * p**s - b / s * q**s).sum(-1) / (a * b)


def masked_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    weights = mask.double()
    return (per_token * weights).sum() / weights.sum()


def probs(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    return torch.softmax(teacher / temperature, -1), torch.softmax(student / temperature, -1)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize(("a", "b"), [(0.2, 0.7), (0.5, 0.5), (0.1, 0.8), (1.5, -0.4), (-0.3, 0.9)])
def test_general_formula_value_and_gradient_in_float64(
    a: float, b: float, temperature: float
) -> None:
    student, teacher, mask = make_batch(seed=int(100 * a) % 17)
    s1, s2 = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    got = ab_divergence(s1, teacher, mask, temperature=temperature, alpha=a, beta=b)
    p, q = probs(s2, teacher, temperature)
    want = masked_mean(general_ab(p, q, a, b), mask)
    assert got.dtype == torch.float64 and want.item() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g1, g2 = torch.autograd.grad(got, s1)[0], torch.autograd.grad(want, s2)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "value"),
    [(0.2, 0.7, 0.102591), (0.5, 0.5, 0.088087), (0.1, 0.8, 0.103613), (0.5, -0.5, 0.351557)]
    + [(0.0, 0.0, 0.379034), (0.5, 0.0, 0.169748)],
)
def test_reference_sheet_numbers(a: float, b: float, value: float) -> None:
    """p = [.7, .2, .1], q = [.5, .3, .2]; the sheet's numbers, computed with numpy."""
    student = torch.tensor(Q, dtype=torch.float64).log()
    teacher = torch.tensor(P, dtype=torch.float64).log()
    assert ab_divergence(student, teacher, alpha=a, beta=b).item() == pytest.approx(value, abs=5e-7)


def test_the_official_one_over_alpha_branch_would_be_off_by_a_factor_alpha() -> None:
    """At (0.5, 0) the official code's branch gives 0.084874 = 0.5 x the true limit."""
    student = torch.tensor(Q, dtype=torch.float64).log()
    teacher = torch.tensor(P, dtype=torch.float64).log()
    limit = ab_divergence(student, teacher, alpha=0.5, beta=0.0).item()
    assert 0.5 * limit == pytest.approx(0.084874, abs=5e-7)
    near = ab_divergence(student, teacher, alpha=0.5, beta=1e-6).item()
    assert near == pytest.approx(limit, rel=1e-5)


def test_one_zero_is_forward_kl_and_zero_one_is_reverse_kl() -> None:
    student, teacher, mask = make_batch(seed=3)
    p, q = probs(student, teacher)
    fkl = masked_mean((p * (p.log() - q.log())).sum(-1), mask)
    rkl = masked_mean((q * (q.log() - p.log())).sum(-1), mask)
    torch.testing.assert_close(
        ab_divergence(student, teacher, mask, alpha=1.0, beta=0.0), fkl, rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(
        ab_divergence(student, teacher, mask, alpha=0.0, beta=1.0), rkl, rtol=1e-12, atol=1e-14
    )


def test_one_half_one_half_is_twice_the_squared_hellinger_sum() -> None:
    student, teacher, mask = make_batch(seed=4)
    p, q = probs(student, teacher)
    want = masked_mean(2 * ((p.sqrt() - q.sqrt()) ** 2).sum(-1), mask)
    got = ab_divergence(student, teacher, mask, alpha=0.5, beta=0.5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    ("singular", "near"),
    [
        ((0.6, 0.0), lambda e: (0.6, e)),  # beta = 0
        ((-0.4, 0.0), lambda e: (-0.4, e)),
        ((0.0, 0.8), lambda e: (e, 0.8)),  # alpha = 0
        ((0.0, -0.5), lambda e: (e, -0.5)),
        ((0.7, -0.7), lambda e: (0.7, -0.7 + e)),  # alpha + beta = 0
        ((-0.3, 0.3), lambda e: (-0.3 + e, 0.3)),
    ],
)
def test_each_limit_branch_is_the_limit_of_the_general_formula(
    singular: tuple[float, float], near: object, sign: float
) -> None:
    """Off a singular line by 1e-6 the general formula moves by O(1e-6) and loses about
    1e-16 / 1e-6 to cancellation, so both agree with the branch to 1e-5 (relative)."""
    student, teacher, mask = make_batch(seed=5)
    p, q = probs(student, teacher)
    a, b = near(sign * 1e-6)  # type: ignore[operator]
    general = masked_mean(general_ab(p, q, a, b), mask)
    branch = ab_divergence(student, teacher, mask, alpha=singular[0], beta=singular[1])
    torch.testing.assert_close(branch, general, rtol=1e-5, atol=0.0)


@pytest.mark.parametrize(("a", "b"), [(1e-6, 2e-6), (-1e-6, 3e-6), (2e-6, -1e-6), (-1e-6, -2e-6)])
def test_the_double_limit_at_the_origin(a: float, b: float) -> None:
    """At 1e-6 from (0, 0) the general form divides by alpha beta ~ 1e-12: it keeps about
    four digits (1e-16 / 1e-12), so the check is to 1e-3."""
    student, teacher, mask = make_batch(seed=6)
    p, q = probs(student, teacher)
    general = masked_mean(general_ab(p, q, a, b), mask)
    origin = ab_divergence(student, teacher, mask, alpha=0.0, beta=0.0)
    torch.testing.assert_close(origin, general, rtol=1e-3, atol=0.0)
    by_hand = masked_mean(0.5 * ((p.log() - q.log()) ** 2).sum(-1), mask)
    torch.testing.assert_close(origin, by_hand, rtol=1e-12, atol=0.0)


def test_teacher_receives_no_gradient() -> None:
    student, teacher, mask = make_batch(seed=9)
    for a, b in ((0.2, 0.7), (0.5, 0.0), (0.0, 0.5), (0.5, -0.5), (0.0, 0.0)):
        s, t = student.clone().requires_grad_(True), teacher.clone().requires_grad_(True)
        torch.autograd.backward(ab_divergence(s, t, mask, alpha=a, beta=b))
        assert t.grad is None
        assert s.grad is not None and s.grad.abs().sum() > 0, (a, b)


def test_zero_probabilities_follow_the_zero_log_zero_convention() -> None:
    """Forward KL (1, 0) with a teacher zero, reverse KL (0, 1) with a student zero: finite."""
    ninf = float("-inf")
    student = torch.tensor([[0.0, 1.0, ninf]], dtype=torch.float64)
    teacher = torch.tensor([[ninf, 0.5, 0.0]], dtype=torch.float64)
    for a, b, fixed in ((1.0, 0.0, "teacher"), (0.0, 1.0, "student")):
        s = student if fixed == "student" else student.clamp(min=-3.0)
        t = teacher if fixed == "teacher" else teacher.clamp(min=-3.0)
        leaf = s.clone().requires_grad_(True)
        value = ab_divergence(leaf, t, alpha=a, beta=b)
        (grad,) = torch.autograd.grad(value, leaf)
        assert math.isfinite(value.item()) and torch.isfinite(grad).all(), (a, b)


def test_non_finite_parameters_are_rejected() -> None:
    student, teacher, _ = make_batch(seed=1)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        ab_divergence(student, teacher, alpha=float("nan"))
    with pytest.raises(ValueError, match="beta must be a finite number"):
        ab_divergence(student, teacher, beta=float("inf"))


PAIRS = st.sampled_from([0.0, 0.5, -0.5, 1.0, 0.2, 0.7, -0.3, 1.5])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-8, 8), min_size=8, max_size=8),
    st.lists(st.floats(-8, 8), min_size=8, max_size=8),
    PAIRS,
    PAIRS,
)
def test_non_negative_and_zero_only_at_equality(
    student: list[float], teacher: list[float], a: float, b: float
) -> None:
    s = torch.tensor(student, dtype=torch.float64).view(2, 4)
    t = torch.tensor(teacher, dtype=torch.float64).view(2, 4)
    # Rounding scales with the summands: sum_v p_v^(alpha + beta) over the branch's divisor
    # (negative exponents make p^(alpha + beta) large where p is small).
    divisor = abs(a * b) if a * b != 0 and a + b != 0 else max(a * a, b * b) or 1.0
    largest = float((torch.softmax(t, -1) ** (a + b)).sum(-1).max())
    tolerance = 1e-13 * max(1.0, largest / divisor)
    value = ab_divergence(s, t, alpha=a, beta=b).item()
    assert math.isfinite(value) and value >= -tolerance, (a, b, value)
    assert abs(ab_divergence(t.clone(), t, alpha=a, beta=b).item()) <= tolerance
