"""Robustness of the token-level losses: huge logits, half precision, degenerate shapes, bad input.

Each loss must stay finite for logits of magnitude 1e4, compute half inputs in float32 (and
return float32), give 0 for a one-word vocabulary or an empty sequence, and reject
inconsistent shapes or parameters with a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from reference_impls.abkd import ab_divergence
from reference_impls.akl import adaptive_kl
from reference_impls.bitdistiller import confidence_aware_kl
from reference_impls.jsd import generalized_jsd, js_divergence
from reference_impls.kl import forward_kl, reverse_kl, soft_cross_entropy, taid_loss
from reference_impls.multi_teacher import multi_teacher_kl
from reference_impls.skew_kl import skew_forward_kl, skew_reverse_kl
from reference_impls.tvd import total_variation

Loss = Callable[..., Tensor]

LOSSES: dict[str, Loss] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "soft_cross_entropy": soft_cross_entropy,
    "js_divergence": js_divergence,
    "generalized_jsd": lambda s, t, mask=None, **kw: generalized_jsd(s, t, mask, beta=0.3, **kw),
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "total_variation": total_variation,
    "adaptive_kl": adaptive_kl,
    "confidence_aware_kl": lambda s, t, mask=None, **kw: confidence_aware_kl(
        s, t, mask, gamma=0.6, **kw
    ),
    "multi_teacher_kl": lambda s, t, mask=None, **kw: multi_teacher_kl(
        s, [t, 0.5 * t], mask, weights=[0.7, 0.3], **kw
    ),
    "taid_loss": lambda s, t, mask=None, **kw: taid_loss(s, t, mask, t=0.5, **kw),
    "ab_divergence": ab_divergence,
}
NAMES = sorted(LOSSES)


def logits_pair(shape: tuple[int, ...], seed: int = 0, scale: float = 3.0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=gen), scale * torch.randn(shape, generator=gen)


def value_and_grad(
    loss: Loss, student: Tensor, teacher: Tensor, **kw: object
) -> tuple[Tensor, Tensor]:
    leaf = student.detach().clone().requires_grad_(True)
    value = loss(leaf, teacher, **kw)
    (grad,) = torch.autograd.grad(value, leaf)
    return value, grad


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("name", NAMES)
def test_huge_logits_stay_finite(name: str, temperature: float) -> None:
    gen = torch.Generator().manual_seed(1)
    shape = (2, 3, 11)
    student = 1e4 * torch.randint(-1, 2, shape, generator=gen).float()
    teacher = 1e4 * torch.randint(-1, 2, shape, generator=gen).float()
    student[0, 0], teacher[0, 0] = 1e4, -1e4  # all logits tied at the extreme
    student[0, 1], teacher[0, 1] = teacher[0, 1], teacher[0, 1]  # identical extremes
    for s, t in ((student, teacher), (student.double(), teacher.double())):
        value, grad = value_and_grad(LOSSES[name], s, t, temperature=temperature)
        assert math.isfinite(value.item()), value
        assert torch.isfinite(grad).all()
        assert value.item() > 0  # the distributions do differ


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_half_inputs_compute_and_return_float32(name: str, half: torch.dtype) -> None:
    student, teacher = logits_pair((2, 4, 9), seed=2)
    student, teacher = student.to(half), teacher.to(half)
    mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    value, grad = value_and_grad(LOSSES[name], student, teacher, mask=mask)
    reference = LOSSES[name](student.float(), teacher.float(), mask)
    assert value.dtype == torch.float32 and value.dim() == 0
    torch.testing.assert_close(value.detach(), reference, rtol=1e-5, atol=1e-6)
    assert grad.dtype == half and torch.isfinite(grad).all()
    # mixed precision: a half student against a float32 teacher
    mixed = LOSSES[name](student, teacher.float(), mask)
    torch.testing.assert_close(mixed, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_half_inputs_with_huge_logits(name: str, half: torch.dtype) -> None:
    student = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]]).to(half)
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [-1e4, 1e4, -5e3]]).to(half)
    value, grad = value_and_grad(LOSSES[name], student, teacher)
    assert value.dtype == torch.float32 and math.isfinite(value.item())
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_word_vocabulary_gives_zero(name: str) -> None:
    student, teacher = logits_pair((2, 3, 1), seed=3)
    value, grad = value_and_grad(LOSSES[name], student, teacher, temperature=2.0)
    assert value.item() == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name", NAMES)
def test_empty_sequence_gives_zero(name: str) -> None:
    student, teacher = logits_pair((2, 0, 5), seed=4)
    value, grad = value_and_grad(
        LOSSES[name], student, teacher, mask=torch.ones(2, 0, dtype=torch.bool)
    )
    assert value.item() == 0.0 and value.dim() == 0
    assert grad.shape == (2, 0, 5)
    value = LOSSES[name](student, teacher)  # no mask either
    assert value.item() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_masked_out_vocabulary_slot_is_harmless(name: str) -> None:
    # A slot at -inf in both models (e.g. padding of the vocabulary) contributes nothing.
    student, teacher = logits_pair((2, 3, 6), seed=5)
    value, grad = value_and_grad(LOSSES[name], student, teacher)
    student[..., -1] = teacher[..., -1] = float("-inf")
    padded, padded_grad = value_and_grad(LOSSES[name], student, teacher)
    small, small_grad = value_and_grad(LOSSES[name], student[..., :-1], teacher[..., :-1])
    assert torch.isfinite(padded) and torch.isfinite(padded_grad).all()
    torch.testing.assert_close(padded, small)
    torch.testing.assert_close(padded_grad[..., :-1], small_grad)
    assert torch.equal(padded_grad[..., -1], torch.zeros(2, 3))
    assert not torch.allclose(value, padded)  # the slot did carry mass before


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_shapes_raise_a_clear_error(name: str) -> None:
    student, _ = logits_pair((2, 3, 5))
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*\(2, 3, 7\)"):
        LOSSES[name](student, torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*\(2, 4, 5\)"):
        LOSSES[name](student, torch.randn(2, 4, 5))


@pytest.mark.parametrize("name", NAMES)
def test_mask_of_the_wrong_shape_or_dtype_is_rejected(name: str) -> None:
    student, teacher = logits_pair((2, 3, 5))
    with pytest.raises(ValueError, match=r"mask shape \(3, 2\)"):
        LOSSES[name](student, teacher, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask shape"):
        LOSSES[name](student, teacher, torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        LOSSES[name](student, teacher, torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_bad_temperature_or_integer_logits_are_rejected(name: str) -> None:
    student, teacher = logits_pair((2, 5))
    for temperature in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            LOSSES[name](student, teacher, temperature=temperature)
    with pytest.raises(TypeError, match="floating-point"):
        LOSSES[name](student.long(), teacher.long())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s, t: generalized_jsd(s, t, beta=-0.1), "beta"),
        (lambda s, t: generalized_jsd(s, t, beta=1.5), "beta"),
        (lambda s, t: skew_forward_kl(s, t, alpha=1.0), "alpha"),
        (lambda s, t: skew_reverse_kl(s, t, alpha=1.0), "alpha"),
        (lambda s, t: skew_forward_kl(s, t, alpha=-0.2), "alpha"),
        (lambda s, t: adaptive_kl(s, t, mu=1.2), "mu"),
        (lambda s, t: adaptive_kl(s, t, mu=-0.1), "mu"),
        (lambda s, t: confidence_aware_kl(s, t, gamma=1.1), "gamma"),
        (lambda s, t: confidence_aware_kl(s, t, gamma=torch.tensor([0.5, 0.5])), "gamma"),
        (lambda s, t: multi_teacher_kl(s, []), "at least one teacher"),
        (lambda s, t: multi_teacher_kl(s, [t, t], weights=[1.0, -1.0]), "weights"),
        (lambda s, t: multi_teacher_kl(s, [t, t], weights=[1.0]), "weights"),
        (lambda s, t: multi_teacher_kl(s, [t, t], weights=[0.0, 0.0]), "weights"),
        (lambda s, t: multi_teacher_kl(s, [t, t[:, :3]]), "vocabularies differ"),
    ],
)
def test_invalid_parameters_are_rejected(
    call: Callable[[Tensor, Tensor], Tensor], match: str
) -> None:
    student, teacher = logits_pair((3, 4))
    with pytest.raises(ValueError, match=match):
        call(student, teacher)


def test_skew_kl_accepts_the_valid_range_ends() -> None:
    student, teacher = logits_pair((3, 4))
    for alpha in (0.0, 0.999):
        assert math.isfinite(skew_forward_kl(student, teacher, alpha=alpha).item())
        assert math.isfinite(skew_reverse_kl(student, teacher, alpha=alpha).item())
    for mu in (0.0, 1.0):
        assert math.isfinite(adaptive_kl(student, teacher, mu=mu).item())


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_values_at_masked_tokens_are_ignored(name: str) -> None:
    # A masked (e.g. padding) position whose student logit is -inf where the teacher has mass
    # has an infinite per-token forward KL; it must not leak into the mean or its gradient.
    student, teacher = logits_pair((2, 3, 5), seed=6)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    clean, clean_grad = value_and_grad(LOSSES[name], student, teacher, mask=mask)
    student[0, 1, 2] = float("-inf")
    dirty, dirty_grad = value_and_grad(LOSSES[name], student, teacher, mask=mask)
    assert torch.isfinite(dirty) and torch.isfinite(dirty_grad).all()
    torch.testing.assert_close(dirty, clean)
    torch.testing.assert_close(dirty_grad, clean_grad)
