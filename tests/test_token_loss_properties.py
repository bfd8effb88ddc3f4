"""Properties of the token-level distillation losses, checked with hypothesis on float64 inputs.

Divergence properties (non-negativity, zero exactly when the distributions agree, symmetry of
JSD, the endpoints of the generalised JSD and of the skew KL, the TV bound, masking and
invariance under a relabelling of the vocabulary).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from reference_impls.abkd import ab_divergence
from reference_impls.akl import adaptive_kl
from reference_impls.bitdistiller import confidence_aware_kl
from reference_impls.jsd import generalized_jsd, js_divergence
from reference_impls.kl import forward_kl, reverse_kl, soft_cross_entropy, taid_loss
from reference_impls.multi_teacher import multi_teacher_kl
from reference_impls.skew_kl import skew_forward_kl, skew_reverse_kl
from reference_impls.tvd import total_variation

Loss = Callable[[Tensor, Tensor, Tensor], Tensor]

#: Divergences: >= 0 and 0 exactly when P = Q (soft cross-entropy is not one: it equals H(P)).
DIVERGENCES: dict[str, Loss] = {
    "forward_kl": lambda s, t, m: forward_kl(s, t, m),
    "reverse_kl": lambda s, t, m: reverse_kl(s, t, m),
    "js_divergence": lambda s, t, m: js_divergence(s, t, m),
    "generalized_jsd_0.2": lambda s, t, m: generalized_jsd(s, t, m, beta=0.2),
    "skew_forward_kl": lambda s, t, m: skew_forward_kl(s, t, m, alpha=0.1),
    "skew_reverse_kl": lambda s, t, m: skew_reverse_kl(s, t, m, alpha=0.4),
    "total_variation": lambda s, t, m: total_variation(s, t, m),
    "adaptive_kl": lambda s, t, m: adaptive_kl(s, t, m, mu=0.5),
    "confidence_aware_kl": lambda s, t, m: confidence_aware_kl(s, t, m, gamma=0.3),
    # two copies of the same teacher: the mixture is that teacher again
    "multi_teacher_kl": lambda s, t, m: multi_teacher_kl(s, [t, t], m, weights=[1.0, 2.0]),
    "ab_divergence": lambda s, t, m: ab_divergence(s, t, m, alpha=0.2, beta=0.7),
}
ALL_LOSSES: dict[str, Loss] = {
    **DIVERGENCES,
    "soft_cross_entropy": lambda s, t, m: soft_cross_entropy(s, t, m),
    # KL to a target between student and teacher: a divergence from the student's view only
    "taid_loss": lambda s, t, m: taid_loss(s, t, m, t=0.6),
}

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def batches(draw: st.DrawFn, bound: float = 30.0) -> tuple[Tensor, Tensor, Tensor]:
    """Student logits, teacher logits (float64, shape [B, L, V]) and a bool mask [B, L]."""
    b, length, vocab = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 7))
    logits = st.lists(
        st.floats(-bound, bound, allow_nan=False, allow_infinity=False),
        min_size=b * length * vocab,
        max_size=b * length * vocab,
    )
    student = torch.tensor(draw(logits), dtype=torch.float64).view(b, length, vocab)
    teacher = torch.tensor(draw(logits), dtype=torch.float64).view(b, length, vocab)
    flags = draw(st.lists(st.booleans(), min_size=b * length, max_size=b * length))
    return student, teacher, torch.tensor(flags, dtype=torch.bool).view(b, length)


def largest_counted_tv(student: Tensor, teacher: Tensor, mask: Tensor) -> float:
    """Largest total variation distance over counted tokens, from explicit softmaxes."""
    p, q = torch.softmax(teacher, -1), torch.softmax(student, -1)
    tv = 0.5 * (p - q).abs().sum(-1)
    return float(tv[mask].max()) if mask.any() else 0.0


@PROPERTY_SETTINGS
@given(batches())
def test_divergences_are_non_negative(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    student, teacher, mask = batch
    for name, loss in ALL_LOSSES.items():
        value = loss(student, teacher, mask)
        assert math.isfinite(value.item()) and value.item() >= -1e-12, (name, value)


@PROPERTY_SETTINGS
@given(batches())
def test_zero_when_student_equals_teacher(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    _, teacher, mask = batch
    for name, loss in DIVERGENCES.items():
        assert abs(loss(teacher.clone(), teacher, mask).item()) <= 1e-12, name


@PROPERTY_SETTINGS
@given(batches())
def test_positive_when_distributions_differ(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    student, teacher, mask = batch
    # By Pinsker, a token with TV >= 0.05 contributes at least ~1e-3 to every divergence here;
    # averaged over at most 6 counted tokens that stays far above 1e-6.
    if student.shape[-1] == 1:
        return  # V = 1: there is a single distribution, P = Q always
    if largest_counted_tv(student, teacher, mask) < 0.05:
        # Make them differ: the student puts almost all its mass on the teacher's least likely
        # token, which has P <= 1/V <= 1/2, so TV >= 1/2 - e^-60 V at every token.
        low = teacher.argmin(dim=-1, keepdim=True)
        student = torch.zeros_like(teacher).scatter(-1, low, 60.0)
        mask = torch.ones_like(mask)
    assert largest_counted_tv(student, teacher, mask) >= 0.05
    for name, loss in DIVERGENCES.items():
        assert loss(student, teacher, mask).item() > 1e-6, name


@PROPERTY_SETTINGS
@given(batches())
def test_soft_cross_entropy_is_forward_kl_plus_teacher_entropy(
    batch: tuple[Tensor, Tensor, Tensor],
) -> None:
    student, teacher, mask = batch
    p = torch.softmax(teacher, -1)
    entropy = -(p * torch.log_softmax(teacher, -1)).sum(-1)
    mean_entropy = (entropy * mask).sum() / mask.sum().clamp(min=1)
    got = soft_cross_entropy(student, teacher, mask) - forward_kl(student, teacher, mask)
    torch.testing.assert_close(got, mean_entropy, rtol=1e-9, atol=1e-9)


@PROPERTY_SETTINGS
@given(batches())
def test_js_divergence_is_symmetric(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    student, teacher, mask = batch
    torch.testing.assert_close(
        js_divergence(student, teacher, mask),
        js_divergence(teacher, student, mask),
        rtol=1e-9,
        atol=1e-12,
    )
    torch.testing.assert_close(
        js_divergence(student, teacher, mask), generalized_jsd(student, teacher, mask, beta=0.5)
    )


@PROPERTY_SETTINGS
@given(batches(), st.sampled_from([1.0, 2.0]))
def test_generalized_jsd_endpoints_are_exactly_forward_and_reverse_kl(
    batch: tuple[Tensor, Tensor, Tensor], temperature: float
) -> None:
    student, teacher, mask = batch
    kw = {"temperature": temperature}
    assert torch.equal(
        generalized_jsd(student, teacher, mask, beta=0.0, **kw),
        forward_kl(student, teacher, mask, **kw),
    )
    assert torch.equal(
        generalized_jsd(student, teacher, mask, beta=1.0, **kw),
        reverse_kl(student, teacher, mask, **kw),
    )


@PROPERTY_SETTINGS
@given(batches(bound=2.0))
def test_generalized_jsd_is_discontinuous_at_the_endpoints(
    batch: tuple[Tensor, Tensor, Tensor],
) -> None:
    # Documented jump: near beta = 0 the value behaves like beta * KL(P||Q) -> 0, not KL(P||Q);
    # near beta = 1 like (1 - beta) * KL(Q||P). Bounded logits keep the O(beta^2) term small.
    student, teacher, mask = batch
    eps = 1e-8
    fkl, rkl = forward_kl(student, teacher, mask), reverse_kl(student, teacher, mask)
    near_0 = generalized_jsd(student, teacher, mask, beta=eps)
    near_1 = generalized_jsd(student, teacher, mask, beta=1.0 - eps)
    assert near_0.item() <= 1e-7 and near_1.item() <= 1e-7
    torch.testing.assert_close(near_0 / eps, fkl, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(near_1 / (1.0 - (1.0 - eps)), rkl, rtol=1e-3, atol=1e-4)


@PROPERTY_SETTINGS
@given(batches(), st.sampled_from([1.0, 2.0]))
def test_skew_kl_with_alpha_zero_is_kl(
    batch: tuple[Tensor, Tensor, Tensor], temperature: float
) -> None:
    student, teacher, mask = batch
    kw = {"temperature": temperature}
    torch.testing.assert_close(
        skew_forward_kl(student, teacher, mask, alpha=0.0, **kw),
        forward_kl(student, teacher, mask, **kw),
        rtol=1e-12,
        atol=1e-14,
    )
    torch.testing.assert_close(
        skew_reverse_kl(student, teacher, mask, alpha=0.0, **kw),
        reverse_kl(student, teacher, mask, **kw),
        rtol=1e-12,
        atol=1e-14,
    )


@PROPERTY_SETTINGS
@given(batches(bound=1e3))
def test_total_variation_is_at_most_one(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    student, teacher, mask = batch
    assert 0.0 <= total_variation(student, teacher, mask).item() <= 1.0 + 1e-12
    # the bound is reached by disjoint supports
    disjoint = total_variation(torch.tensor([[500.0, 0.0]]), torch.tensor([[0.0, 500.0]]))
    assert disjoint.item() == 1.0


@PROPERTY_SETTINGS
@given(batches())
def test_all_masked_batch_is_zero_with_zero_gradient(batch: tuple[Tensor, Tensor, Tensor]) -> None:
    student, teacher, mask = batch
    nothing = torch.zeros_like(mask)
    for name, loss in ALL_LOSSES.items():
        leaf = student.clone().requires_grad_(True)
        value = loss(leaf, teacher, nothing)
        (grad,) = torch.autograd.grad(value, leaf)
        assert value.item() == 0.0, name
        assert torch.equal(grad, torch.zeros_like(grad)), name


@PROPERTY_SETTINGS
@given(batches(), st.data())
def test_permuting_the_vocabulary_leaves_the_value_unchanged(
    batch: tuple[Tensor, Tensor, Tensor], data: st.DataObject
) -> None:
    student, teacher, mask = batch
    vocab = student.shape[-1]
    perm = torch.tensor(data.draw(st.permutations(range(vocab))))
    # AKL sorts the teacher probabilities: tied probabilities are ordered by vocabulary index,
    # so a relabelling may move a tied token across the head/tail boundary. Check AKL only
    # when the teacher has no (near-)tie.
    gaps = teacher.sort(dim=-1).values.diff(dim=-1)
    ties = bool((gaps < 1e-6).any())
    for name, loss in ALL_LOSSES.items():
        if name == "adaptive_kl" and ties:
            continue
        torch.testing.assert_close(
            loss(student[..., perm], teacher[..., perm], mask),
            loss(student, teacher, mask),
            rtol=1e-9,
            atol=1e-12,
            msg=name,
        )
