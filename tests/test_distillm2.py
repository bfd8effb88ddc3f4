"""DistiLLM-2's contrastive loss against a formula written out here, sequence by sequence.

The reference never calls ``reference_impls``: explicit softmaxes, the skew KLs summed by
hand, a Python loop for the per-sequence token means, then the batch mean; the student's
share of the skew reverse KL's mixture is detached there too, and a test shows that this
choice changes the gradient (so the comparison can see it).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from reference_impls.skew_kl import distillm2_b_schedule, distillm2_loss

Batch = tuple[Tensor, Tensor, Tensor]


def make_side(seed: int, shape: tuple[int, int, int], scale: float = 2.0) -> Batch:
    """Student logits, teacher logits and a mask with unequal counts per sequence."""
    gen = torch.Generator().manual_seed(seed)
    student = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    teacher = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.zeros(shape[:2], dtype=torch.bool)
    for i in range(shape[0]):
        mask[i, : 1 + (i * 2) % shape[1]] = True  # 1, 3, 5, ... counted tokens
    return student, teacher, mask


def reference(
    teacher_side: Batch, student_side: Batch, alpha: float, b: float, detach_srkl: bool = True
) -> Tensor:
    def per_sequence_mean(per_token: Tensor, mask: Tensor) -> Tensor:
        means = []
        for row, keep in zip(per_token, mask, strict=True):
            if keep.any():
                means.append(row[keep].sum() / keep.sum())
        return torch.stack(means).mean() if means else per_token.sum() * 0

    s, t, m = teacher_side
    p, q = torch.softmax(t.detach(), -1), torch.softmax(s, -1)
    mix = alpha * p + (1 - alpha) * q
    skl = (p * (p.log() - mix.log())).sum(-1)
    s, t, m_s = student_side
    p, q = torch.softmax(t.detach(), -1), torch.softmax(s, -1)
    mix = (1 - alpha) * p + alpha * (q.detach() if detach_srkl else q)
    srkl = (q * (q.log() - mix.log())).sum(-1)
    return (2 - b) * per_sequence_mean(skl, m) + b * per_sequence_mean(srkl, m_s)


def grads(fn: object, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Value and gradients with respect to both student logits."""
    la, lc = a.clone().requires_grad_(True), c.clone().requires_grad_(True)
    value = fn(la, lc)  # type: ignore[operator]
    ga, gc = torch.autograd.grad(value, (la, lc))
    return value.detach(), ga, gc


@pytest.mark.parametrize(("alpha", "b"), [(0.1, 1.0), (0.3, 1.5), (0.0, 0.5), (0.1, 2.0)])
def test_matches_the_written_out_formula_in_float64(alpha: float, b: float) -> None:
    ts, tt, tm = make_side(1, (3, 5, 7))
    ss, st, sm = make_side(2, (4, 6, 7))  # another batch size and length
    got = grads(lambda x, y: distillm2_loss(x, tt, tm, y, st, sm, alpha=alpha, b=b), ts, ss)
    want = grads(lambda x, y: reference((x, tt, tm), (y, st, sm), alpha, b), ts, ss)
    assert got[0].dtype == torch.float64 and want[0].item() > 1e-2
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_stop_gradient_in_the_reverse_mixture_changes_the_gradient() -> None:
    ts, tt, tm = make_side(3, (2, 4, 5))
    ss, st, sm = make_side(4, (2, 4, 5))
    detached = grads(lambda x, y: reference((x, tt, tm), (y, st, sm), 0.3, 1.0), ts, ss)
    through = grads(lambda x, y: reference((x, tt, tm), (y, st, sm), 0.3, 1.0, False), ts, ss)
    ours = grads(lambda x, y: distillm2_loss(x, tt, tm, y, st, sm, alpha=0.3), ts, ss)
    assert torch.equal(detached[0], through[0])  # same value ...
    assert (detached[2] - through[2]).abs().max() > 1e-3  # ... different gradient
    torch.testing.assert_close(ours[2], detached[2], rtol=1e-10, atol=1e-12)


def test_reference_sheet_numbers() -> None:
    """p = [.7, .2, .1], q = [.5, .3, .2] on both sides: CALD = 0.142405 (b = 1), 0.144030."""
    p = torch.tensor([[[0.7, 0.2, 0.1]]], dtype=torch.float64).log()
    q = torch.tensor([[[0.5, 0.3, 0.2]]], dtype=torch.float64).log()
    assert distillm2_loss(q, p, None, q, p, None).item() == pytest.approx(0.142405, abs=5e-7)
    assert distillm2_loss(q, p, None, q, p, None, b=1.5).item() == pytest.approx(0.144030, abs=5e-7)


def test_sequences_are_averaged_not_tokens() -> None:
    """Two sequences with 1 and 3 counted tokens: each sequence's mean weighs one half."""
    ts, tt, _ = make_side(5, (2, 3, 4))
    mask = torch.tensor([[True, False, False], [True, True, True]])
    nothing = torch.zeros_like(mask)
    value = distillm2_loss(ts, tt, mask, ts, tt, nothing, b=0.0)  # the SKL term alone, x2
    p, q = torch.softmax(tt, -1), torch.softmax(ts, -1)
    skl = (p * (p.log() - (0.1 * p + 0.9 * q).log())).sum(-1)
    want = 2 * (skl[0, 0] + skl[1].mean()) / 2
    torch.testing.assert_close(value, want, rtol=1e-12, atol=0.0)
    assert not torch.isclose(value, 2 * skl[mask].mean())


def test_empty_sequences_and_all_masked_sides_count_nothing() -> None:
    ts, tt, tm = make_side(6, (3, 4, 5))
    ss, st, sm = make_side(7, (3, 4, 5))
    sm_with_empty = sm.clone()
    sm_with_empty[1] = False
    full = distillm2_loss(ts, tt, tm, ss[[0, 2]], st[[0, 2]], sm[[0, 2]])
    with_empty = distillm2_loss(ts, tt, tm, ss, st, sm_with_empty)
    torch.testing.assert_close(with_empty, full, rtol=1e-12, atol=0.0)
    nothing_t, nothing_s = torch.zeros_like(tm), torch.zeros_like(sm)
    value, g1, g2 = grads(lambda x, y: distillm2_loss(x, tt, nothing_t, y, st, nothing_s), ts, ss)
    assert value.item() == 0.0
    assert torch.equal(g1, torch.zeros_like(g1)) and torch.equal(g2, torch.zeros_like(g2))


def test_teacher_receives_no_gradient() -> None:
    ts, tt, tm = make_side(8, (2, 3, 5))
    ss, st, sm = make_side(9, (2, 3, 5))
    tt.requires_grad_(True)
    st.requires_grad_(True)
    ts.requires_grad_(True)
    ss.requires_grad_(True)
    torch.autograd.backward(distillm2_loss(ts, tt, tm, ss, st, sm))
    assert tt.grad is None and st.grad is None
    assert ts.grad is not None and ts.grad.abs().sum() > 0
    assert ss.grad is not None and ss.grad.abs().sum() > 0


def test_huge_logits_stay_finite_and_half_inputs_give_float32() -> None:
    gen = torch.Generator().manual_seed(1)
    shape = (2, 3, 11)
    huge = [1e4 * torch.randint(-1, 2, shape, generator=gen).float() for _ in range(4)]
    for dtype in (torch.float32, torch.float64):
        s_t, t_t, s_s, t_s = (x.to(dtype) for x in huge)
        value, g1, g2 = grads(
            lambda x, y, t_t=t_t, t_s=t_s: distillm2_loss(x, t_t, None, y, t_s, None), s_t, s_s
        )
        assert math.isfinite(value.item()) and value.item() > 0
        assert torch.isfinite(g1).all() and torch.isfinite(g2).all()
    ts, tt, tm = make_side(10, (2, 4, 9))
    ss, st, sm = make_side(11, (2, 4, 9))
    h_ts, h_tt, h_ss, h_st = (x.to(torch.bfloat16) for x in (ts, tt, ss, st))
    value = distillm2_loss(h_ts, h_tt, tm, h_ss, h_st, sm)
    reference_value = distillm2_loss(h_ts.float(), h_tt.float(), tm, h_ss.float(), h_st.float(), sm)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference_value, rtol=1e-5, atol=1e-6)


def test_bad_parameters_and_shapes_are_rejected() -> None:
    ts, tt, tm = make_side(12, (2, 3, 5))
    with pytest.raises(ValueError, match="b must lie in"):
        distillm2_loss(ts, tt, tm, ts, tt, tm, b=2.5)
    with pytest.raises(ValueError, match="alpha"):
        distillm2_loss(ts, tt, tm, ts, tt, tm, alpha=1.0)
    with pytest.raises(ValueError, match="same shape"):
        distillm2_loss(ts, tt[:, :2], tm, ts, tt, tm)
    with pytest.raises(ValueError, match="sequence dimension"):
        distillm2_loss(ts[0, 0], tt[0, 0], None, ts, tt, tm)


def test_gradual_b_schedule() -> None:
    """b = 1 + 0.5 min(1, 2 s / S): 1 at the start, 1.25 at S/4, 1.5 from S/2 on."""
    assert distillm2_b_schedule(0, 100) == 1.0
    assert distillm2_b_schedule(25, 100) == 1.25
    assert distillm2_b_schedule(50, 100) == 1.5
    assert distillm2_b_schedule(100, 100) == 1.5
    with pytest.raises(ValueError, match="total_steps"):
        distillm2_b_schedule(0, 0)
    with pytest.raises(ValueError, match="step"):
        distillm2_b_schedule(-1, 10)


def test_loss_and_b_schedule_are_exported() -> None:
    import reference_impls

    assert reference_impls.distillm2_loss is distillm2_loss
    assert reference_impls.distillm2_b_schedule is distillm2_b_schedule
    assert {"distillm2_loss", "distillm2_b_schedule"} <= set(reference_impls.__all__)
