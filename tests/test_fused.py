"""Fused, chunked lm-head distillation against the unfused full-logits composition.

The reference is what the fused function promises to equal: the logits written out in full
(``h @ W.T + b``), the token-level loss of ``REGISTRY`` on them, and for the hard-label term
a cross-entropy spelled out here with ``log_softmax`` and ``gather``. Values and gradients
with respect to the student's hidden states, weight and bias are compared, in float64 to
1e-10 and in float32 to 1e-5 (relative).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import reference_impls.fused as fused_module
from reference_impls import REGISTRY, TOKEN_LEVEL_LOSSES
from reference_impls.fused import FusedLinearDistillLoss, fused_linear_distill

PARAMS: dict[str, dict[str, Any]] = {
    "generalized_jsd": {"beta": 0.3},
    "skew_forward_kl": {"alpha": 0.2},
    "skew_reverse_kl": {"alpha": 0.3},
    "adaptive_kl": {"mu": 0.4},
    "confidence_aware_kl": {"gamma": 0.7},
    "taid_loss": {"t": 0.6},
    "ab_divergence": {"alpha": 0.3, "beta": 0.5},
}
N, H_S, H_T, V = 20, 6, 10, 17


def make_inputs(
    dtype: torch.dtype = torch.float64,
    n: int = N,
    bias: bool = True,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Student/teacher hidden states and heads; logits of a few units so losses are not tiny."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 1.0) -> Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    x = {
        "student_hidden": rand(n, H_S).requires_grad_(),
        "student_weight": rand(V, H_S, scale=0.6).requires_grad_(),
        "teacher_hidden": rand(n, H_T),
        "teacher_weight": rand(V, H_T, scale=0.6),
        "mask": torch.rand(n, generator=g) > 0.3,
        "labels": torch.randint(0, V, (n,), generator=g),
    }
    if bias:
        x["student_bias"] = rand(V).requires_grad_()
        x["teacher_bias"] = rand(V)
    return x


def full_logits(x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The unfused logits, ``h @ W.T + b``, for student and teacher."""
    z_s = x["student_hidden"] @ x["student_weight"].T
    z_t = x["teacher_hidden"] @ x["teacher_weight"].T
    if "student_bias" in x:
        z_s = z_s + x["student_bias"]
        z_t = z_t + x["teacher_bias"]
    return z_s, z_t


def student_params(x: dict[str, Tensor]) -> list[Tensor]:
    """The tensors that receive gradients: student hidden states, weight and (if any) bias."""
    return [x[k] for k in ("student_hidden", "student_weight", "student_bias") if k in x]


def fused(x: dict[str, Tensor], **kwargs: Any) -> Tensor:
    """The code under test on the inputs of ``make_inputs``."""
    return fused_linear_distill(
        x["student_hidden"],
        x["student_weight"],
        x["teacher_hidden"],
        x["teacher_weight"],
        student_bias=x.get("student_bias"),
        teacher_bias=x.get("teacher_bias"),
        **kwargs,
    )


def assert_close(actual: Tensor, expected: Tensor, rel: float) -> None:
    """Elementwise closeness relative to the largest magnitude of ``expected``."""
    assert actual.shape == expected.shape
    scale = expected.detach().abs().max().clamp(min=1e-30)
    err = (actual.detach().double() - expected.detach().double()).abs().max()
    assert err <= rel * scale, f"max error {float(err):.3e} > {rel:.0e} x {float(scale):.3e}"


def check_against(value: Tensor, ref: Tensor, x: dict[str, Tensor], rel: float) -> None:
    """Compare a fused value with its reference, in value and in student gradients."""
    assert_close(value, ref, rel)
    params = student_params(x)
    grads = torch.autograd.grad(value, params)
    ref_grads = torch.autograd.grad(ref, params)
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.dtype == r.dtype
        assert_close(g, r, rel)


@pytest.mark.parametrize("name", TOKEN_LEVEL_LOSSES)
def test_every_token_loss_matches_full_logits_float64(name: str) -> None:
    x = make_inputs()
    z_s, z_t = full_logits(x)
    params = PARAMS.get(name, {})
    ref = REGISTRY[name](z_s, z_t, mask=x["mask"], temperature=2.0, **params)
    out = fused(x, loss=name, mask=x["mask"], temperature=2.0, chunk_size=7, **params)
    assert ref > 0.01
    check_against(out, ref, x, 1e-10)


def test_tensor_parameters_pass_through() -> None:
    """confidence_aware_kl's gamma is often a 0-dim tensor from teacher_confidence."""
    x = make_inputs()
    z_s, z_t = full_logits(x)
    gamma = torch.tensor(0.25, dtype=torch.float64)
    ref = REGISTRY["confidence_aware_kl"](z_s, z_t, mask=x["mask"], gamma=gamma)
    out = fused(x, loss="confidence_aware_kl", mask=x["mask"], chunk_size=3, gamma=gamma)
    check_against(out, ref, x, 1e-10)


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 19, 20, 64])
def test_chunk_sizes_that_do_and_do_not_divide_n(chunk_size: int) -> None:
    x = make_inputs()
    z_s, z_t = full_logits(x)
    ref = REGISTRY["generalized_jsd"](z_s, z_t, mask=x["mask"], beta=0.5)
    out = fused(x, mask=x["mask"], chunk_size=chunk_size, beta=0.5)
    check_against(out, ref, x, 1e-10)


@pytest.mark.parametrize("name", ["forward_kl", "generalized_jsd", "total_variation"])
def test_float32_matches_to_1e_5(name: str) -> None:
    x = make_inputs(torch.float32, bias=False)
    z_s, z_t = full_logits(x)
    ref = REGISTRY[name](z_s, z_t, mask=x["mask"], temperature=1.5)
    out = fused(x, loss=name, mask=x["mask"], temperature=1.5, chunk_size=6)
    assert out.dtype == torch.float32
    check_against(out, ref, x, 1e-5)


def test_without_mask_and_without_bias() -> None:
    x = make_inputs(bias=False)
    z_s, z_t = full_logits(x)
    ref = REGISTRY["reverse_kl"](z_s, z_t)
    check_against(fused(x, loss="reverse_kl", chunk_size=8), ref, x, 1e-10)


def test_default_loss_is_generalized_jsd_with_beta_one_half() -> None:
    x = make_inputs()
    z_s, z_t = full_logits(x)
    ref = REGISTRY["generalized_jsd"](z_s, z_t, beta=0.5)
    check_against(fused(x), ref, x, 1e-10)


def manual_cross_entropy(z_s: Tensor, labels: Tensor, counted: Tensor) -> Tensor:
    """Token-mean of -log softmax(z_s)[label] over the counted tokens, written out."""
    safe = torch.where(counted, labels, torch.zeros_like(labels))
    nll = -torch.log_softmax(z_s, dim=-1).gather(-1, safe[:, None])[:, 0]
    return (nll * counted).sum() / counted.sum()


@pytest.mark.parametrize("hard_weight", [0.0, 0.3, 1.0])
def test_hard_label_term_matches_unfused_composition(hard_weight: float) -> None:
    x = make_inputs()
    labels = x["labels"].clone()
    labels[::4] = -100  # ignored positions, some of them also masked out
    counted = x["mask"] & (labels != -100)
    z_s, z_t = full_logits(x)
    kd = REGISTRY["forward_kl"](z_s, z_t, mask=counted, temperature=2.0)
    ce = manual_cross_entropy(z_s, labels, counted)  # untempered student logits
    ref = hard_weight * ce + (1 - hard_weight) * kd
    out = fused(
        x,
        loss="forward_kl",
        mask=x["mask"],
        labels=labels,
        hard_weight=hard_weight,
        temperature=2.0,
        chunk_size=6,
    )
    check_against(out, ref, x, 1e-10)


def test_hard_label_term_uses_custom_ignore_index() -> None:
    x = make_inputs()
    labels = x["labels"].clone()
    labels[1::3] = 999
    counted = labels != 999
    z_s, z_t = full_logits(x)
    ref = 0.5 * manual_cross_entropy(z_s, labels, counted) + 0.5 * REGISTRY["js_divergence"](
        z_s, z_t, mask=counted
    )
    out = fused(x, loss="js_divergence", labels=labels, hard_weight=0.5, ignore_index=999)
    check_against(out, ref, x, 1e-10)


def test_bf16_inputs_accumulate_in_float32() -> None:
    x32 = make_inputs(torch.float32, n=24)
    xb = {
        k: (v.detach().bfloat16().requires_grad_(v.requires_grad) if v.is_floating_point() else v)
        for k, v in x32.items()
    }
    z_s, z_t = full_logits(xb)  # bf16 logits, as the unfused bf16 model would produce
    assert z_s.dtype == torch.bfloat16
    ref = REGISTRY["generalized_jsd"](z_s, z_t, mask=xb["mask"], beta=0.5)
    out = fused(xb, mask=xb["mask"], chunk_size=5, beta=0.5)
    assert out.dtype == torch.float32 and ref.dtype == torch.float32
    assert_close(out, ref, 1e-5)  # same bf16 logits, both losses in float32
    # float64 gradients of the same (bf16-rounded) problem: the fused bf16 gradients must be
    # as close to them as bf16 rounding of the result allows.
    x64 = {
        k: (v.detach().double().requires_grad_(v.requires_grad) if v.is_floating_point() else v)
        for k, v in xb.items()
    }
    ref64 = REGISTRY["generalized_jsd"](
        *[z.to(torch.bfloat16).double() for z in full_logits(x64)], mask=xb["mask"]
    )
    grads = torch.autograd.grad(out, student_params(xb))
    grads64 = torch.autograd.grad(ref64, student_params(x64))
    for g, r in zip(grads, grads64, strict=True):
        assert g.dtype == torch.bfloat16
        assert_close(g, r, 2e-2)


def test_all_masked_batch_gives_zero_and_zero_gradients() -> None:
    x = make_inputs()
    mask = torch.zeros(N, dtype=torch.bool)
    out = fused(x, mask=mask, chunk_size=6, labels=x["labels"], hard_weight=0.4)
    assert out.item() == 0.0
    for g in torch.autograd.grad(out, student_params(x)):
        assert torch.count_nonzero(g) == 0


def test_all_labels_ignored_gives_zero() -> None:
    x = make_inputs()
    labels = torch.full((N,), -100)
    out = fused(x, labels=labels, hard_weight=0.5)
    assert out.item() == 0.0
    assert torch.count_nonzero(torch.autograd.grad(out, x["student_weight"])[0]) == 0


@pytest.mark.parametrize("n", [1, 3])
def test_n_smaller_than_one_chunk(n: int) -> None:
    x = make_inputs(n=n)
    x["mask"] = torch.ones(n, dtype=torch.bool)
    z_s, z_t = full_logits(x)
    ref = REGISTRY["skew_reverse_kl"](z_s, z_t, alpha=0.1)
    out = fused(x, loss="skew_reverse_kl", mask=x["mask"], alpha=0.1)  # chunk_size 1024
    check_against(out, ref, x, 1e-10)


def test_never_more_than_chunk_size_rows_of_logits() -> None:
    x = make_inputs()
    mask = x["mask"].clone()
    mask[8:16] = False  # the second chunk of 8 has nothing to count: it must be skipped
    seen: list[tuple[int, ...]] = []

    def spy(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, **kw: Any) -> Tensor:
        seen.append(tuple(student_logits.shape))
        assert teacher_logits.shape == student_logits.shape
        out: Tensor = REGISTRY["forward_kl"](student_logits, teacher_logits, mask, **kw)
        return out

    z_s, z_t = full_logits(x)
    ref = REGISTRY["forward_kl"](z_s, z_t, mask=mask)
    out = fused(x, loss=spy, mask=mask, chunk_size=8)
    assert seen == [(8, V), (4, V)]
    check_against(out, ref, x, 1e-10)


@pytest.mark.parametrize("name", TOKEN_LEVEL_LOSSES)
def test_loss_blocks_inside_chunks_match_full_logits(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 7 rows split into loss blocks of 3, 3 and 1; one block has nothing to count."""
    monkeypatch.setattr(fused_module, "_block_rows", lambda vocab, device, chunk: 3)
    x = make_inputs()
    mask = x["mask"].clone()
    mask[3:6] = False  # the second block of the first chunk: its gradient rows must be 0
    mask[0] = True
    z_s, z_t = full_logits(x)
    params = PARAMS.get(name, {})
    ref = REGISTRY[name](z_s, z_t, mask=mask, temperature=2.0, **params)
    out = fused(x, loss=name, mask=mask, temperature=2.0, chunk_size=7, **params)
    check_against(out, ref, x, 1e-10)


def test_loss_sees_blocks_of_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_module, "_block_rows", lambda vocab, device, chunk: 3)
    x = make_inputs()
    mask = torch.ones(N, dtype=torch.bool)
    mask[3:6] = False
    seen: list[int] = []

    def spy(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, **kw: Any) -> Tensor:
        seen.append(student_logits.shape[0])
        out: Tensor = REGISTRY["forward_kl"](student_logits, teacher_logits, mask, **kw)
        return out

    fused(x, loss=spy, mask=mask, chunk_size=7)
    # N = 20: chunks of 7, 7, 6; blocks of 3 (the masked rows 3-5 are skipped)
    assert seen == [3, 1, 3, 3, 1, 3, 3]


def test_block_rows_rule() -> None:
    """CPU: about 2**19 logits per thread, at least 1 row, at most the chunk; GPU: the chunk."""
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    assert fused_module._block_rows(17, cpu, 64) == 64
    assert fused_module._block_rows(2**19, cpu, 1024) == min(1024, threads)
    assert fused_module._block_rows(2**20, cpu, 1024) == min(1024, threads)
    assert fused_module._block_rows(128256, cpu, 1024) == min(1024, 4 * threads)
    assert fused_module._block_rows(128256, torch.device("cuda"), 256) == 256


def test_leading_batch_dimensions_are_flattened() -> None:
    x = make_inputs()
    z_s, z_t = full_logits(x)
    ref = REGISTRY["forward_kl"](z_s, z_t, mask=x["mask"])
    h = x["student_hidden"].detach().reshape(4, 5, H_S).requires_grad_()
    out = fused_linear_distill(
        h,
        x["student_weight"],
        x["teacher_hidden"].reshape(4, 5, H_T),
        x["teacher_weight"],
        loss="forward_kl",
        mask=x["mask"].reshape(4, 5),
        student_bias=x["student_bias"],
        teacher_bias=x["teacher_bias"],
        chunk_size=3,
    )
    assert_close(out, ref, 1e-10)
    (g,) = torch.autograd.grad(out, h)
    (r,) = torch.autograd.grad(ref, x["student_hidden"])
    assert_close(g, r.reshape(4, 5, H_S), 1e-10)


def test_incoming_gradient_scales_the_stored_gradients() -> None:
    x = make_inputs()
    z_s, z_t = full_logits(x)
    ref = 3.0 * REGISTRY["total_variation"](z_s, z_t, mask=x["mask"]) - 1.0
    out = 3.0 * fused(x, loss="total_variation", mask=x["mask"], chunk_size=6) - 1.0
    check_against(out, ref, x, 1e-10)


def test_backward_through_parameter_grads_and_teacher_gets_none() -> None:
    x = make_inputs()
    x["teacher_weight"].requires_grad_()
    z_s, z_t = full_logits(x)
    ref = REGISTRY["forward_kl"](z_s, z_t.detach(), mask=x["mask"])
    ref_grad = torch.autograd.grad(ref, x["student_weight"])[0]
    torch.autograd.backward(fused(x, loss="forward_kl", mask=x["mask"], chunk_size=5))
    assert x["teacher_weight"].grad is None
    grad = x["student_weight"].grad
    assert grad is not None
    assert_close(grad, ref_grad, 1e-10)


def test_frozen_head_still_gives_hidden_gradient_and_no_grad_gives_value() -> None:
    x = make_inputs()
    x["student_weight"].requires_grad_(False)
    x["student_bias"].requires_grad_(False)
    z_s, z_t = full_logits(x)
    ref = REGISTRY["forward_kl"](z_s, z_t, mask=x["mask"])
    out = fused(x, loss="forward_kl", mask=x["mask"], chunk_size=6)
    assert_close(
        torch.autograd.grad(out, x["student_hidden"])[0],
        torch.autograd.grad(ref, x["student_hidden"])[0],
        1e-10,
    )
    tracked: list[bool] = []

    def spy(student_logits: Tensor, teacher_logits: Tensor, **kw: Any) -> Tensor:
        tracked.append(student_logits.requires_grad)
        out: Tensor = REGISTRY["forward_kl"](student_logits, teacher_logits, **kw)
        return out

    with torch.no_grad():
        value = fused(x, loss=spy, mask=x["mask"], chunk_size=6)
    assert tracked and not any(tracked)  # no gradient work under no_grad
    assert not value.requires_grad
    assert_close(value, ref, 1e-10)


def test_module_wrapper_equals_function() -> None:
    x = make_inputs()
    module = FusedLinearDistillLoss(
        "generalized_jsd", temperature=1.7, chunk_size=6, hard_weight=0.2, beta=0.4
    )
    out = module(
        x["student_hidden"],
        x["student_weight"],
        x["teacher_hidden"],
        x["teacher_weight"],
        mask=x["mask"],
        labels=x["labels"],
        student_bias=x["student_bias"],
        teacher_bias=x["teacher_bias"],
    )
    z_s, z_t = full_logits(x)
    counted = x["mask"]
    kd = REGISTRY["generalized_jsd"](z_s, z_t, mask=counted, temperature=1.7, beta=0.4)
    ref = 0.2 * manual_cross_entropy(z_s, x["labels"], counted) + 0.8 * kd
    check_against(out, ref, x, 1e-10)


def test_double_backward_is_refused() -> None:
    """Second derivatives are not available; asking for one is an error, never a silent 0."""
    x = make_inputs()
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    out = scale * fused(x, loss="forward_kl")
    (g,) = torch.autograd.grad(out, x["student_hidden"], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        torch.autograd.backward(g.sum())


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"teacher_hidden": torch.zeros(N + 1, H_T)}, ValueError, "leading"),
        ({"student_weight": torch.zeros(V, H_S + 1)}, ValueError, "student weight"),
        ({"teacher_weight": torch.zeros(V, H_S)}, ValueError, "teacher weight"),
        ({"teacher_weight": torch.zeros(V + 2, H_T)}, ValueError, "vocabularies differ"),
        ({"student_bias": torch.zeros(V + 1)}, ValueError, "student_bias"),
        ({"student_weight": torch.zeros(V * H_S)}, ValueError, r"\[V, H\]"),
    ],
)
def test_mismatched_shapes_raise_clear_errors(
    change: dict[str, Tensor], error: type[Exception], match: str
) -> None:
    x = make_inputs()
    x.update({k: v.double() for k, v in change.items()})
    with pytest.raises(error, match=match):
        fused(x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mask": torch.ones(N + 1, dtype=torch.bool)}, ValueError, "mask shape"),
        ({"mask": torch.ones(N)}, TypeError, "bool"),
        ({"labels": torch.zeros(N - 1, dtype=torch.long)}, ValueError, "labels shape"),
        ({"hard_weight": 0.5}, ValueError, "needs labels"),
        ({"hard_weight": 1.5, "labels": torch.zeros(N, dtype=torch.long)}, ValueError, "[0, 1]"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"loss": "dpo_loss"}, ValueError, "token-level"),
        ({"temperature": 0.0}, ValueError, "temperature"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        fused(make_inputs(), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bias", "kwargs"),
    [
        (False, {"loss": "forward_kl", "chunk_size": 8}),
        # the benchmarked loss, with a ragged last chunk, bias and the hard-label term
        (True, {"loss": "generalized_jsd", "beta": 0.3, "chunk_size": 5, "hard_weight": 0.25}),
    ],
)
def test_compiled_and_eager_agree(bias: bool, kwargs: dict[str, Any]) -> None:
    """Tiny cases (compiling on CPU takes ~20 s cold): same value and gradients."""
    x = make_inputs(torch.float32, n=8, bias=bias)
    kwargs = {**kwargs, "mask": x["mask"], "labels": x["labels"]}
    eager = fused(x, **kwargs)
    compiled = fused(x, compile=True, **kwargs)
    check_against(compiled, eager, x, 1e-5)
