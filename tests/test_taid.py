"""TAID: the interpolated-target KL against formulas written out here, and the t schedule.

The references never call ``reference_impls``: the target is built as the normalised
geometric mixture :math:`q^{1-t} p^t` from explicit softmaxes, the KL summed by hand; the
schedule's expected values are computed step by step in the test with ``math`` from the
update rule of the official code (relative change, momentum, sigmoid step, linear floor,
clamp), and two of them are pinned to the numbers of the shared reference sheet.
"""

from __future__ import annotations

import math

import logit_batches
import pytest
import torch
from torch import Tensor

from reference_impls.kl import TAIDSchedule, forward_kl, taid_loss

P = [0.7, 0.2, 0.1]
Q = [0.5, 0.3, 0.2]


def make_batch(seed: int, shape: tuple[int, ...] = (2, 3, 6)) -> tuple[Tensor, Tensor, Tensor]:
    """The shared batch, over a vocabulary of 6 by default."""
    return logit_batches.make_batch(seed, shape)


def reference_taid(student: Tensor, teacher: Tensor, mask: Tensor, t: float, temp: float) -> Tensor:
    """Mean over counted tokens of KL(p_t || q), p_t = q^(1-t) p^t / Z with q detached."""
    q = torch.softmax(student / temp, dim=-1)
    p = torch.softmax(teacher.detach() / temp, dim=-1)
    unnormalised = q.detach() ** (1 - t) * p**t
    p_t = unnormalised / unnormalised.sum(-1, keepdim=True)
    per_token = (p_t * (p_t.log() - q.log())).sum(-1)
    weights = mask.double()
    return (per_token * weights).sum() / weights.sum()


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("t", [0.2, 0.4, 0.75])
def test_matches_the_geometric_mixture_formula_in_float64(t: float, temperature: float) -> None:
    student, teacher, mask = make_batch(seed=int(10 * t))
    leaf = student.clone().requires_grad_(True)
    got = taid_loss(leaf, teacher, mask, temperature=temperature, t=t)
    (grad,) = torch.autograd.grad(got, leaf)
    ref_leaf = student.clone().requires_grad_(True)
    want = reference_taid(ref_leaf, teacher, mask, t, temperature)
    (want_grad,) = torch.autograd.grad(want, ref_leaf)
    assert got.dtype == torch.float64 and want.item() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)


def test_gradient_is_student_minus_target() -> None:
    """With the target constant, d KL(p_t || q) / d z_q = q - p_t at every counted token."""
    student, teacher, _ = make_batch(seed=4, shape=(5, 7))
    leaf = student.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(taid_loss(leaf, teacher, t=0.3), leaf)
    q, p = torch.softmax(student, -1), torch.softmax(teacher, -1)
    p_t = q**0.7 * p**0.3
    p_t = p_t / p_t.sum(-1, keepdim=True)
    torch.testing.assert_close(grad, (q - p_t) / 5, rtol=1e-10, atol=1e-13)


def test_reference_sheet_numbers() -> None:
    """p = [.7, .2, .1], q = [.5, .3, .2], t = 0.4: KL(p_t || q) = 0.014995 (the official
    code's cross-entropy, 0.968196, is this KL plus the entropy of p_t)."""
    student = torch.tensor(Q, dtype=torch.float64).log()
    teacher = torch.tensor(P, dtype=torch.float64).log()
    value = taid_loss(student, teacher, t=0.4)
    assert value.item() == pytest.approx(0.014995, abs=5e-7)
    p_t = [0.584489, 0.260639, 0.154872]
    entropy = -sum(x * math.log(x) for x in p_t)
    assert value.item() + entropy == pytest.approx(0.968196, abs=5e-6)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_t_one_is_forward_kl_exactly(temperature: float) -> None:
    student, teacher, mask = make_batch(seed=7)
    s1, s2 = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    taid = taid_loss(s1, teacher, mask, temperature=temperature, t=1.0)
    fkl = forward_kl(s2, teacher, mask, temperature=temperature)
    assert torch.equal(taid, fkl)
    assert torch.equal(torch.autograd.grad(taid, s1)[0], torch.autograd.grad(fkl, s2)[0])


def test_t_zero_gives_zero_value_and_zero_gradient() -> None:
    """The target is the detached student: KL 0, gradient q - q (0 up to rounding)."""
    student, teacher, mask = make_batch(seed=8)
    leaf = student.clone().requires_grad_(True)
    value = taid_loss(leaf, teacher, mask, t=0.0)
    (grad,) = torch.autograd.grad(value, leaf)
    assert value.item() == 0.0
    assert grad.abs().max().item() < 1e-15
    (moving,) = torch.autograd.grad(taid_loss(leaf, teacher, mask, t=0.01), leaf)
    assert moving.abs().max().item() > 1e-4  # a small t already pulls


def test_teacher_and_target_receive_no_gradient() -> None:
    student, teacher, mask = make_batch(seed=9)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    torch.autograd.backward(taid_loss(student, teacher, mask, t=0.5))
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_t_outside_the_unit_interval_is_rejected() -> None:
    student, teacher, _ = make_batch(seed=1)
    for t in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="t must lie in"):
            taid_loss(student, teacher, t=t)


# ------------------------------------------------------------------------------ schedule
def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_one_update_matches_the_reference_sheet() -> None:
    """J 2.0 -> 1.9 at progress 0.1 from t = 0.4: dt = 1.5e-4, and the floor 0.46 binds."""
    schedule = TAIDSchedule(0.4, total_steps=10)
    assert schedule.update(2.0, 0) == 0.4  # the first call only stores the loss
    t = schedule.update(1.9, 1)
    assert t == pytest.approx(0.46, abs=1e-15)
    delta = 5e-4 * sigmoid(0.01 * (0.1 / 2.0)) * (1 - 0.4)
    assert delta == pytest.approx(1.5e-4, abs=1e-7)
    assert schedule.smoothed_change == pytest.approx(0.01 * 0.05, rel=1e-12)


def expected_ts(
    losses: list[tuple[int, float]], t_start: float, t_end: float, alpha: float, beta: float, n: int
) -> list[float]:
    """The update rule written out: relative change, momentum, sigmoid step, floor, clamp."""
    out, t, m, prev = [], t_start, 0.0, None
    for step, loss in losses:
        if prev is not None:
            m = beta * m + (1 - beta) * (prev - loss) / (prev + 1e-15)
            t = min(
                t_end, max(t_start + (t_end - t_start) * step / n, t + alpha * sigmoid(m) * (1 - t))
            )
        prev = loss
        out.append(t)
    return out


def test_worked_sequence_where_the_floor_binds() -> None:
    """t_start 0.3, t_end 0.9, alpha 0.02, momentum 0.5, 100 steps (floor 0.3 + 0.006 n).

    n=0: store J=4. n=1: change (4-2)/4 = 0.5, m = 0.25, dt = 0.02 s(0.25) 0.7 = 0.00787 above
    the floor 0.306. n=2: change (2-3)/2 = -0.5, m = -0.125: the loss rose, yet dt > 0. n=3:
    change 0, m = -0.0625. n=90: the floor 0.84 binds.
    """
    losses = [(0, 4.0), (1, 2.0), (2, 3.0), (3, 3.0), (90, 1.0)]
    schedule = TAIDSchedule(0.3, t_end=0.9, alpha=0.02, momentum=0.5, total_steps=100)
    got = [schedule.update(loss, n) for n, loss in losses]
    assert got == pytest.approx(expected_ts(losses, 0.3, 0.9, 0.02, 0.5, 100), rel=1e-14)
    assert got[0] == 0.3
    assert got[1] == pytest.approx(0.3 + 0.02 * sigmoid(0.25) * 0.7, abs=1e-15)
    assert got[1] == pytest.approx(0.307870, abs=1e-6)
    assert got[1] < got[2] < got[3] < got[4]
    assert got[4] == pytest.approx(0.84, abs=1e-15)


def test_worked_sequence_where_the_clamp_binds() -> None:
    """alpha 0.5: the adaptive step dominates and t is clamped at t_end = 0.9 by step 7.

    n=1: dt = 0.5 s(0.25) 0.7 = 0.19676 -> t = 0.49676; each later step closes part of the
    remaining gap until t + dt > 0.9 at n = 7.
    """
    losses = [(0, 4.0), (1, 2.0), (2, 3.0), (3, 3.0), (4, 1.0), (5, 0.5), (6, 0.4), (7, 0.3)]
    losses.append((8, 0.2))
    schedule = TAIDSchedule(0.3, t_end=0.9, alpha=0.5, momentum=0.5, total_steps=100)
    got = [schedule.update(loss, n) for n, loss in losses]
    assert got == pytest.approx(expected_ts(losses, 0.3, 0.9, 0.5, 0.5, 100), rel=1e-14)
    assert got[1] == pytest.approx(0.49676, abs=1e-5)
    assert got[6] == pytest.approx(0.89614, abs=1e-5)
    assert got[7] == got[8] == 0.9


def test_call_contract_feeds_the_previous_steps_loss() -> None:
    """``schedule(step, last_loss)`` = update(last_loss, step - 1), then the current t."""
    a = TAIDSchedule(0.2, total_steps=50)
    b = TAIDSchedule(0.2, total_steps=50)
    losses = [3.0, 2.5, 2.6, 1.0]
    assert a(0, None) == {"t": 0.2}
    for step, loss in enumerate(losses, start=1):
        assert a(step, loss) == {"t": b.update(loss, step - 1)}
    assert a.t > 0.2


def test_t_never_decreases_and_stays_within_bounds() -> None:
    gen = torch.Generator().manual_seed(0)
    schedule = TAIDSchedule(0.4, t_end=0.95, alpha=0.05, total_steps=200)
    previous = schedule.t
    for step in range(200):
        loss = float(torch.rand((), generator=gen)) * 10 + 1e-3
        t = schedule.update(loss, step)
        assert previous <= t <= 0.95
        previous = t
    assert previous >= 0.4 + 0.55 * 199 / 200 - 1e-12  # at least the last step's floor


def test_huge_loss_changes_do_not_overflow() -> None:
    schedule = TAIDSchedule(0.4, total_steps=10)
    schedule.update(1e-12, 0)
    assert 0.4 <= schedule.update(1e12, 1) <= 1.0  # relative change -1e24
    assert 0.4 <= schedule.update(1e-12, 2) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t_start": 0.5, "t_end": 0.4}, "t_start"),
        ({"t_start": -0.1}, "t_start"),
        ({"t_start": 0.4, "alpha": 2.0}, "alpha"),
        ({"t_start": 0.4, "momentum": 1.0}, "momentum"),
        ({"t_start": 0.4, "total_steps": 0}, "total_steps"),
    ],
)
def test_bad_schedule_arguments_are_rejected(kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        TAIDSchedule(**args)  # type: ignore[arg-type]


def test_schedule_is_exported_beside_the_loss() -> None:
    import reference_impls

    assert reference_impls.TAIDSchedule is TAIDSchedule
    assert reference_impls.taid_loss is taid_loss
    assert {"TAIDSchedule", "taid_loss"} <= set(reference_impls.__all__)
