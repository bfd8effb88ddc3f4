"""Token-level distillation losses against independent float64 formulas written out here.

The references below never call ``reference_impls``: they build the probabilities with
``softmax`` in float64 and spell out each divergence as explicit sums (Python loops for AKL's
head/tail split), then compare values and gradients with respect to the student logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from logit_batches import make_batch
from torch import Tensor

from reference_impls.akl import adaptive_kl
from reference_impls.bitdistiller import confidence_aware_kl, teacher_confidence
from reference_impls.jsd import generalized_jsd, js_divergence
from reference_impls.kl import forward_kl, reverse_kl, soft_cross_entropy
from reference_impls.multi_teacher import multi_teacher_kl
from reference_impls.skew_kl import skew_forward_kl, skew_reverse_kl
from reference_impls.tokens import mask_from_labels
from reference_impls.tvd import total_variation

Loss = Callable[..., Tensor]
PerToken = Callable[[Tensor, Tensor], Tensor]  # (p, q) with shape [N, V] -> [N]


# ---------------------------------------------------------------- independent references
def kl_rows(a: Tensor, b: Tensor) -> Tensor:
    """KL(a || b) row by row, from explicit probabilities (all entries > 0 here)."""
    return (a * (a.log() - b.log())).sum(dim=-1)


def ref_gjsd(beta: float) -> PerToken:
    def per_token(p: Tensor, q: Tensor) -> Tensor:
        m = beta * p + (1 - beta) * q
        return beta * kl_rows(p, m) + (1 - beta) * kl_rows(q, m)

    return per_token


def akl_weights(p_row: list[float], q_row: list[float], mu: float) -> tuple[float, float]:
    """AKL's head/tail weights for one token, with Python lists and a loop."""
    order = sorted(range(len(p_row)), key=lambda v: -p_row[v])  # stable: ties keep index order
    cumulative, g_head, g_tail = 0.0, 0.0, 0.0
    for rank, v in enumerate(order):
        cumulative += p_row[v]
        gap = abs(p_row[v] - q_row[v])
        if rank == 0 or cumulative <= mu:
            g_head += gap
        else:
            g_tail += gap
    if g_head + g_tail == 0:
        return 0.5, 0.5
    return g_head / (g_head + g_tail), g_tail / (g_head + g_tail)


def ref_akl(mu: float) -> PerToken:
    def per_token(p: Tensor, q: Tensor) -> Tensor:
        rows = []
        for p_row, q_row in zip(p, q, strict=True):
            w_head, w_tail = akl_weights(p_row.tolist(), q_row.detach().tolist(), mu)
            rows.append(w_head * kl_rows(p_row, q_row) + w_tail * kl_rows(q_row, p_row))
        return torch.stack(rows)

    return per_token


# name -> (function, keyword parameters, reference per-token divergence)
CASES: dict[str, tuple[Loss, dict[str, float], PerToken]] = {
    "forward_kl": (forward_kl, {}, lambda p, q: kl_rows(p, q)),
    "reverse_kl": (reverse_kl, {}, lambda p, q: kl_rows(q, p)),
    "soft_cross_entropy": (soft_cross_entropy, {}, lambda p, q: -(p * q.log()).sum(-1)),
    "js_divergence": (
        js_divergence,
        {},
        lambda p, q: 0.5 * kl_rows(p, (p + q) / 2) + 0.5 * kl_rows(q, (p + q) / 2),
    ),
    "generalized_jsd_0.3": (generalized_jsd, {"beta": 0.3}, ref_gjsd(0.3)),
    "generalized_jsd_0.9": (generalized_jsd, {"beta": 0.9}, ref_gjsd(0.9)),
    "generalized_jsd_0": (generalized_jsd, {"beta": 0.0}, lambda p, q: kl_rows(p, q)),
    "generalized_jsd_1": (generalized_jsd, {"beta": 1.0}, lambda p, q: kl_rows(q, p)),
    "skew_forward_kl": (
        skew_forward_kl,
        {"alpha": 0.1},
        lambda p, q: kl_rows(p, 0.1 * p + 0.9 * q),
    ),
    "skew_reverse_kl_0.3": (
        skew_reverse_kl,
        {"alpha": 0.3},
        lambda p, q: kl_rows(q, 0.3 * q + 0.7 * p),
    ),
    "total_variation": (total_variation, {}, lambda p, q: 0.5 * (p - q).abs().sum(-1)),
    "adaptive_kl": (adaptive_kl, {"mu": 0.5}, ref_akl(0.5)),
    "adaptive_kl_0.8": (adaptive_kl, {"mu": 0.8}, ref_akl(0.8)),
    "confidence_aware_kl": (
        confidence_aware_kl,
        {"gamma": 0.7},
        lambda p, q: 0.7 * kl_rows(q, p) + 0.3 * kl_rows(p, q),
    ),
}


def reference_loss(
    per_token: PerToken, student: Tensor, teacher: Tensor, mask: Tensor, temperature: float
) -> Tensor:
    """Masked mean over tokens of the reference per-token divergence."""
    vocab = student.shape[-1]
    p = torch.softmax(teacher.detach().double().reshape(-1, vocab) / temperature, dim=-1)
    q = torch.softmax(student.double().reshape(-1, vocab) / temperature, dim=-1)
    weights = mask.reshape(-1).double()
    return (per_token(p, q) * weights).sum() / weights.sum()


def value_and_grad(fn: Callable[[Tensor], Tensor], logits: Tensor) -> tuple[Tensor, Tensor]:
    leaf = logits.detach().clone().requires_grad_(True)
    value = fn(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


# ---------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_formula(name: str, temperature: float) -> None:
    fn, params, per_token = CASES[name]
    student, teacher, mask = make_batch(seed=len(name) + int(temperature))
    got, got_grad = value_and_grad(
        lambda s: fn(s, teacher, mask, temperature=temperature, **params), student
    )
    want, want_grad = value_and_grad(
        lambda s: reference_loss(per_token, s, teacher, mask, temperature), student
    )
    assert got.dtype == torch.float64 and got.dim() == 0
    assert want.item() > 1e-3  # the case is not degenerate
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_mask_means_every_token_counts_for_any_leading_shape(name: str) -> None:
    fn, params, per_token = CASES[name]
    student, teacher, _ = make_batch(seed=11, shape=(7, 6))
    all_tokens = torch.ones(7, dtype=torch.bool)
    got = fn(student, teacher, **params)
    want = reference_loss(per_token, student, teacher, all_tokens, 1.0)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_teacher_receives_no_gradient(name: str) -> None:
    fn, params, _ = CASES[name]
    student, teacher, mask = make_batch(seed=3)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    torch.autograd.backward(fn(student, teacher, mask, **params))
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name: str) -> None:
    fn, params, _ = CASES[name]
    # AKL's weights are stop-gradient, so finite differences see them move unless they are
    # locally constant. With V = 2 both gaps are |P_1 - Q_1| and the weights stay 1/2.
    vocab = 2 if name.startswith("adaptive_kl") else 4
    student, teacher, mask = make_batch(seed=5, shape=(2, 3, vocab))
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: fn(s, teacher, mask, temperature=1.5, **params), (student,)
    )


def test_mask_from_labels() -> None:
    labels = torch.tensor([[5, -100, 0], [-100, -100, 2]])
    want = torch.tensor([[True, False, True], [False, False, True]])
    assert torch.equal(mask_from_labels(labels), want)
    assert torch.equal(mask_from_labels(labels, ignore_index=0), labels != 0)


def test_masked_tokens_do_not_change_the_value() -> None:
    student, teacher, mask = make_batch(seed=8)
    changed = student.clone()
    changed[~mask] += 5.0 * torch.randn_like(changed[~mask])
    for name, (fn, params, _) in CASES.items():
        before, after = fn(student, teacher, mask, **params), fn(changed, teacher, mask, **params)
        assert torch.equal(before, after), name


# ----------------------------------------------------------------------------------- AKL
def test_adaptive_kl_hand_built_case() -> None:
    # Vocabulary order deliberately unsorted: P = (0.3, 0.1, 0.4, 0.2), Q uniform, mu = 0.5.
    # Sorted P: 0.4 | 0.3, 0.2, 0.1 with cumulative mass 0.4, 0.7, 0.9, 1.0, so the head is
    # {0.4} (0.3 crosses mu and goes to the tail). g_head = 0.15, g_tail = 0.05 + 0.05 + 0.15.
    # (Putting the crossing token in the head would give 0.2 / 0.2, i.e. weights 1/2, 1/2.)
    p = [0.3, 0.1, 0.4, 0.2]
    q = [0.25] * 4
    fkl = sum(pv * math.log(pv / qv) for pv, qv in zip(p, q, strict=True))
    rkl = sum(qv * math.log(qv / pv) for pv, qv in zip(p, q, strict=True))
    want = (0.15 * fkl + 0.25 * rkl) / 0.40
    teacher = torch.tensor([p], dtype=torch.float64).log()
    student = torch.tensor([q], dtype=torch.float64).log()
    got = adaptive_kl(student, teacher, mu=0.5)
    assert got.item() == pytest.approx(want, rel=1e-12)
    assert got.item() != pytest.approx(0.5 * fkl + 0.5 * rkl, rel=1e-3)


def test_adaptive_kl_top1_is_always_in_the_head() -> None:
    # P = (0.1, 0.7, 0.2): the top-1 token alone exceeds mu = 0.5 but stays in the head.
    p, q = [0.1, 0.7, 0.2], [0.05, 0.5, 0.45]
    fkl = sum(pv * math.log(pv / qv) for pv, qv in zip(p, q, strict=True))
    rkl = sum(qv * math.log(qv / pv) for pv, qv in zip(p, q, strict=True))
    g_head, g_tail = 0.2, 0.25 + 0.05  # |0.7 - 0.5| and |0.2 - 0.45| + |0.1 - 0.05|
    want = (g_head * fkl + g_tail * rkl) / (g_head + g_tail)
    teacher = torch.tensor(p, dtype=torch.float64).log()
    student = torch.tensor(q, dtype=torch.float64).log()
    assert adaptive_kl(student, teacher, mu=0.5).item() == pytest.approx(want, rel=1e-12)


def test_adaptive_kl_weights_are_stop_gradient() -> None:
    student, teacher, mask = make_batch(seed=21, shape=(2, 4, 6))
    mu = 0.5
    p = torch.softmax(teacher.reshape(-1, 6), dim=-1)

    def combination(weights_follow_student: bool) -> Callable[[Tensor], Tensor]:
        def loss(s: Tensor) -> Tensor:
            q = torch.softmax(s.reshape(-1, 6), dim=-1)
            rows = []
            for p_row, q_row in zip(p, q, strict=True):
                w_head, w_tail = akl_weights(p_row.tolist(), q_row.detach().tolist(), mu)
                if weights_follow_student:  # same weights, but differentiable through Q
                    order = torch.argsort(p_row, descending=True, stable=True)
                    head = torch.cumsum(p_row[order], 0) <= mu
                    head[0] = True
                    gap = (p_row[order] - q_row[order]).abs()
                    w_head = gap[head].sum() / gap.sum()
                    w_tail = gap[~head].sum() / gap.sum()
                rows.append(w_head * kl_rows(p_row, q_row) + w_tail * kl_rows(q_row, p_row))
            m = mask.reshape(-1).double()
            return (torch.stack(rows) * m).sum() / m.sum()

        return loss

    _, got = value_and_grad(lambda s: adaptive_kl(s, teacher, mask, mu=mu), student)
    _, fixed = value_and_grad(combination(weights_follow_student=False), student)
    _, moving = value_and_grad(combination(weights_follow_student=True), student)
    torch.testing.assert_close(got, fixed, rtol=1e-9, atol=1e-12)
    assert (got - moving).abs().max() > 1e-4  # the check above can tell the two apart


# -------------------------------------------------------------------------- BitDistiller
def test_teacher_confidence_is_the_mean_reference_token_probability() -> None:
    gen = torch.Generator().manual_seed(4)
    teacher = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 7, (2, 5), generator=gen)
    labels[0, 1] = labels[1, 4] = -100
    for temperature in (1.0, 2.0):
        probs, counted = [], 0
        for b in range(2):
            for t in range(5):
                if labels[b, t] == -100:
                    continue
                row = torch.softmax(teacher[b, t] / temperature, dim=-1)
                probs.append(row[labels[b, t]].item())
                counted += 1
        got = teacher_confidence(teacher, labels, temperature=temperature)
        assert got.dim() == 0 and not got.requires_grad
        assert got.item() == pytest.approx(sum(probs) / counted, rel=1e-12)


def test_teacher_confidence_edge_cases() -> None:
    teacher = torch.randn(3, 4)
    assert teacher_confidence(teacher, torch.full((3,), -100)).item() == 0.0
    assert teacher_confidence(teacher.half(), torch.tensor([0, 1, 2])).dtype == torch.float32
    labels_other_ignore = torch.tensor([1, 9, 9])
    want = torch.softmax(teacher[0], -1)[1]
    got = teacher_confidence(teacher, labels_other_ignore, ignore_index=9)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="labels"):
        teacher_confidence(teacher, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="shape"):
        teacher_confidence(teacher, torch.tensor([0, 1]))


def test_confidence_aware_kl_accepts_a_constant_tensor_gamma() -> None:
    student, teacher, mask = make_batch(seed=9)
    gamma = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    s = student.clone().requires_grad_(True)
    loss = confidence_aware_kl(s, teacher, mask, gamma=gamma)
    torch.autograd.backward(loss)
    assert gamma.grad is None and s.grad is not None
    torch.testing.assert_close(
        loss.detach(), confidence_aware_kl(student, teacher, mask, gamma=0.25)
    )
    want = 0.25 * reverse_kl(student, teacher, mask) + 0.75 * forward_kl(student, teacher, mask)
    torch.testing.assert_close(loss.detach(), want)


# ------------------------------------------------------------------------- multi-teacher
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_multi_teacher_with_one_teacher_is_forward_kl(temperature: float) -> None:
    student, teacher, mask = make_batch(seed=13)
    got, got_grad = value_and_grad(
        lambda s: multi_teacher_kl(s, [teacher], mask, temperature=temperature), student
    )
    want, want_grad = value_and_grad(
        lambda s: forward_kl(s, teacher, mask, temperature=temperature), student
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("weights", [None, [1.0, 3.0], torch.tensor([0.2, 0.2])])
def test_multi_teacher_is_kl_to_the_explicit_mixture(
    weights: list[float] | Tensor | None, temperature: float
) -> None:
    student, teacher_a, mask = make_batch(seed=17)
    _, teacher_b, _ = make_batch(seed=18)
    w_a, w_b = (0.5, 0.5) if weights is None else (float(weights[0]), float(weights[1]))
    w_a, w_b = w_a / (w_a + w_b), w_b / (w_a + w_b)

    def mixture_kl(p: Tensor, q: Tensor) -> Tensor:  # p is unused: the mixture replaces it
        vocab = student.shape[-1]
        p_a = torch.softmax(teacher_a.reshape(-1, vocab) / temperature, dim=-1)
        p_b = torch.softmax(teacher_b.reshape(-1, vocab) / temperature, dim=-1)
        return kl_rows(w_a * p_a + w_b * p_b, q)

    got, got_grad = value_and_grad(
        lambda s: multi_teacher_kl(
            s, [teacher_a, teacher_b], mask, weights=weights, temperature=temperature
        ),
        student,
    )
    want, want_grad = value_and_grad(
        lambda s: reference_loss(mixture_kl, s, teacher_a, mask, temperature), student
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-12)


def test_multi_teacher_zero_weight_drops_a_teacher_and_gradcheck() -> None:
    student, teacher_a, mask = make_batch(seed=19, shape=(2, 3, 4))
    _, teacher_b, _ = make_batch(seed=20, shape=(2, 3, 4))
    got = multi_teacher_kl(student, [teacher_a, teacher_b], mask, weights=[0.0, 2.0])
    torch.testing.assert_close(got, forward_kl(student, teacher_b, mask))
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: multi_teacher_kl(s, [teacher_a, teacher_b], mask, weights=[1.0, 2.0]),
        (student,),
    )
