"""Top-k distillation losses against the dense losses and independent float64 formulas.

The references here build the teacher's stored top-k with ``log_softmax(...).topk`` and spell
out each sparse divergence over the k top-k entries plus the tail as explicit sums of
probabilities (the tail as ``1 - sum``), never calling ``reference_impls.topk``; gradients are
also checked against the closed form ``(Q - P_hat) / T`` of the forward KL.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from reference_impls import REGISTRY
from reference_impls.topk import (
    teacher_topk,
    topk_forward_kl,
    topk_generalized_jsd,
    topk_reverse_kl,
)

TAILS = ("bucket", "renormalize")
SPARSE = {
    "forward_kl": topk_forward_kl,
    "reverse_kl": topk_reverse_kl,
    "generalized_jsd": topk_generalized_jsd,
}


def stored_topk(teacher: Tensor, k: int, t_store: float = 1.0) -> tuple[Tensor, Tensor]:
    """What a cache holds: the top-k of the teacher's full log-softmax at ``t_store``."""
    values, ids = torch.log_softmax(teacher / t_store, dim=-1).topk(k, dim=-1)
    return ids, values


def logits(*shape: int, seed: int, scale: float = 2.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def masked_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    return per_token[mask].sum() / max(int(mask.sum()), 1)


def slot_distributions(
    student: Tensor, ids: Tensor, logprobs: Tensor, temperature: float, t_store: float, tail: str
) -> tuple[Tensor, Tensor]:
    """Teacher P' and student Q' over [top-k..., tail] as explicit probabilities (float64).

    Teacher top-k at T: (1 - r) p^alpha / sum p^alpha with the stored tail r = 1 - sum p kept
    (bucket), or p^alpha / sum p^alpha with tail 0 (renormalize); student tail 1 - sum q_i.
    """
    q = torch.softmax(student / temperature, dim=-1)
    q_top = q.gather(-1, ids)
    p = logprobs.exp()
    r = 1 - p.sum(-1, keepdim=True)
    shaped = p ** (t_store / temperature)
    shaped = shaped / shaped.sum(-1, keepdim=True)
    p_top = shaped if tail == "renormalize" else (1 - r) * shaped
    p_tail = torch.zeros_like(r) if tail == "renormalize" else r
    q_tail = 1 - q_top.sum(-1, keepdim=True)
    return torch.cat([p_top, p_tail], -1), torch.cat([q_top, q_tail], -1)


def kl_sum(a: Tensor, b: Tensor) -> Tensor:
    """sum_j a_j log(a_j / b_j) with 0 log 0 = 0 (also in the gradient)."""
    positive = a > 0
    safe_a = torch.where(positive, a, torch.ones_like(a))
    return torch.where(positive, a * (safe_a / b).log(), torch.zeros_like(a)).sum(-1)


def ref_forward(p: Tensor, q: Tensor, k: int, tail: str) -> Tensor:
    return kl_sum(p, q)


def ref_reverse(p: Tensor, q: Tensor, k: int, tail: str) -> Tensor:
    if tail == "renormalize":  # both conditioned on the top-k
        q_top = q[..., :k] / q[..., :k].sum(-1, keepdim=True)
        return kl_sum(q_top, p[..., :k])
    return kl_sum(q, p)


def ref_jsd(beta: float) -> Callable[[Tensor, Tensor, int, str], Tensor]:
    def per_token(p: Tensor, q: Tensor, k: int, tail: str) -> Tensor:
        m = beta * p + (1 - beta) * q
        return beta * kl_sum(p, m) + (1 - beta) * kl_sum(q, m)

    return per_token


# ------------------------------------------------------------------------ k = V: dense
@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("name", list(SPARSE))
@pytest.mark.parametrize(("temperature", "t_store"), [(1.0, 1.0), (2.0, 2.0), (2.0, 1.0)])
def test_full_support_equals_the_dense_loss(
    name: str, tail: str, temperature: float, t_store: float
) -> None:
    # k = V: value and gradient equal the dense loss of REGISTRY at the training temperature,
    # also when the stored log-probs were taken at another temperature (exact re-tempering).
    vocab = 9
    student = logits(2, 5, vocab, seed=1).requires_grad_()
    teacher = logits(2, 5, vocab, seed=2)
    mask = torch.tensor([[True, True, False, True, True], [False, True, True, True, False]])
    ids, lps = stored_topk(teacher, vocab, t_store)
    perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(3))  # any order
    ids, lps = ids[..., perm], lps[..., perm]
    params = {"beta": 0.3} if name == "generalized_jsd" else {}
    sparse = SPARSE[name](
        student,
        ids,
        lps,
        mask,
        temperature=temperature,
        storage_temperature=t_store,
        tail=tail,
        **params,
    )
    (g_sparse,) = torch.autograd.grad(sparse, student)
    dense = REGISTRY[name](student, teacher, mask, temperature=temperature, **params)
    (g_dense,) = torch.autograd.grad(dense, student)
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_sparse, g_dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_jsd_endpoints_are_the_sparse_kls(tail: str, beta: float) -> None:
    student, teacher = logits(3, 11, seed=4), logits(3, 11, seed=5)
    ids, lps = stored_topk(teacher, 4)
    jsd = topk_generalized_jsd(student, ids, lps, tail=tail, beta=beta)
    kl = (topk_forward_kl if beta == 0.0 else topk_reverse_kl)(student, ids, lps, tail=tail)
    assert torch.equal(jsd, kl)


# ---------------------------------------------------------------- k < V: explicit sums
@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize(
    ("name", "ref"),
    [("forward_kl", ref_forward), ("reverse_kl", ref_reverse), ("generalized_jsd", ref_jsd(0.7))],
)
@pytest.mark.parametrize(("temperature", "t_store"), [(1.0, 1.0), (2.0, 1.0), (0.5, 1.5)])
def test_values_and_gradients_match_explicit_sums(
    name: str, ref: Callable[..., Tensor], tail: str, temperature: float, t_store: float
) -> None:
    vocab, k = 12, 4
    student = logits(3, 4, vocab, seed=6).requires_grad_()
    teacher = logits(3, 4, vocab, seed=7)
    mask = torch.rand(3, 4, generator=torch.Generator().manual_seed(8)) > 0.3
    ids, lps = stored_topk(teacher, k, t_store)
    params = {"beta": 0.7} if name == "generalized_jsd" else {}
    value = SPARSE[name](
        student,
        ids,
        lps,
        mask,
        temperature=temperature,
        storage_temperature=t_store,
        tail=tail,
        **params,
    )
    (grad,) = torch.autograd.grad(value, student)

    ref_student = student.detach().clone().requires_grad_()
    p, q = slot_distributions(ref_student, ids, lps, temperature, t_store, tail)
    expected = masked_mean(ref(p, q, k, tail), mask)
    (expected_grad,) = torch.autograd.grad(expected, ref_student)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("tail", TAILS)
def test_forward_kl_gradient_is_student_minus_spread_teacher(tail: str) -> None:
    # d/dz_v = (q_v - P_hat_v) / T / n_counted, P_hat_v = p_v on the top-k and, off it, the
    # teacher tail r spread like the student: r q_v / q_tail (r = 0 when renormalising).
    vocab, k, temperature = 10, 3, 1.5
    student = logits(6, vocab, seed=9).requires_grad_()
    ids, lps = stored_topk(logits(6, vocab, seed=10), k, temperature)
    mask = torch.tensor([True, True, False, True, True, True])
    loss = topk_forward_kl(
        student,
        ids,
        lps,
        mask,
        temperature=temperature,
        storage_temperature=temperature,
        tail=tail,
    )
    (grad,) = torch.autograd.grad(loss, student)

    q = torch.softmax(student.detach() / temperature, -1)
    p = lps.exp()
    if tail == "renormalize":
        p = p / p.sum(-1, keepdim=True)
    in_top = torch.zeros_like(q, dtype=torch.bool).scatter(-1, ids, True)
    r = (1 - p.sum(-1, keepdim=True)) if tail == "bucket" else torch.zeros(6, 1).double()
    q_tail = (q * ~in_top).sum(-1, keepdim=True)
    p_hat = torch.zeros_like(q).scatter(-1, ids, p) + torch.where(in_top, 0.0, r * q / q_tail)
    expected = (q - p_hat) / temperature * mask.unsqueeze(-1) / mask.sum()
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


def test_storage_temperature_equal_to_training_temperature_is_the_identity() -> None:
    # T = T_store: the stored probabilities are the teacher; nothing is re-tempered.
    vocab, k, temp = 15, 5, 2.0
    student, teacher = logits(4, vocab, seed=11), logits(4, vocab, seed=12)
    ids, lps = stored_topk(teacher, k, temp)
    got = topk_forward_kl(student, ids, lps, temperature=temp, storage_temperature=temp)
    q = torch.softmax(student / temp, -1)
    p, q_top = lps.exp(), q.gather(-1, ids)
    r, q_tail = 1 - p.sum(-1), 1 - q_top.sum(-1)
    expected = ((p * (p / q_top).log()).sum(-1) + r * (r / q_tail).log()).mean()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_renormalize_is_exact_against_the_truncated_teacher_at_any_temperature() -> None:
    # Stored at T_store = 1, trained at T = 3: equals KL(P~ || Q) with P~ the dense teacher at
    # T restricted to the same ids and renormalised.
    vocab, k, temp = 20, 6, 3.0
    student, teacher = logits(5, vocab, seed=13), logits(5, vocab, seed=14, scale=4.0)
    ids, lps = stored_topk(teacher, k, 1.0)
    got = topk_forward_kl(student, ids, lps, temperature=temp, tail="renormalize")
    p_t = torch.softmax(teacher / temp, -1).gather(-1, ids)
    p_t = p_t / p_t.sum(-1, keepdim=True)
    q_top = torch.softmax(student / temp, -1).gather(-1, ids)
    expected = (p_t * (p_t / q_top).log()).sum(-1).mean()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- lower bound (bucket)
@st.composite
def pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor, int, float]:
    vocab = draw(st.integers(2, 12))
    k = draw(st.integers(1, vocab))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.5, 2.0, 6.0]))
    temperature = draw(st.sampled_from([0.7, 1.0, 2.0]))
    return (
        logits(3, vocab, seed=seed, scale=scale),
        logits(3, vocab, seed=seed + 1, scale=scale),
        k,
        temperature,
    )


@settings(max_examples=40, deadline=None)
@given(pairs())
def test_bucket_is_a_lower_bound_of_the_dense_divergence(
    case: tuple[Tensor, Tensor, int, float],
) -> None:
    # Merging the tail into one bucket never increases an f-divergence (data processing):
    # checked for forward KL (the claim), JSD and reverse KL at T = T_store. The
    # stored tail r = 1 - sum p is only known to ~1e-16 here, and reverse KL's
    # q_tail log(q_tail / r) is sensitive to it, so reverse KL is checked where r > 1e-6.
    student, teacher, k, temp = case
    ids, lps = stored_topk(teacher, k, temp)
    resolved = bool((1 - lps.exp().sum(-1) > 1e-6).all()) or k == teacher.shape[-1]
    for name, sparse in SPARSE.items():
        if name == "reverse_kl" and not resolved:
            continue
        value = sparse(student, ids, lps, temperature=temp, storage_temperature=temp)
        dense = REGISTRY[name](student, teacher, temperature=temp)
        assert float(value) <= float(dense) + 1e-9, (name, float(value), float(dense))
        assert float(value) >= -1e-12


# ----------------------------------------------------------------- masks, dtypes, errors
@pytest.mark.parametrize("name", list(SPARSE))
@pytest.mark.parametrize("tail", TAILS)
def test_all_masked_gives_zero_with_zero_gradient(name: str, tail: str) -> None:
    student = logits(2, 3, 8, seed=15).requires_grad_()
    ids, lps = stored_topk(logits(2, 3, 8, seed=16), 3)
    loss = SPARSE[name](student, ids, lps, torch.zeros(2, 3, dtype=torch.bool), tail=tail)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert student.grad is not None and not student.grad.any()


@pytest.mark.parametrize("name", list(SPARSE))
@pytest.mark.parametrize("tail", TAILS)
def test_padding_values_at_masked_tokens_are_ignored(name: str, tail: str) -> None:
    # Masked positions may hold anything (ids -100, repeated ids, NaN log-probs): the value
    # and the gradient equal those of the counted tokens alone.
    student = logits(2, 4, 8, seed=17).requires_grad_()
    ids, lps = stored_topk(logits(2, 4, 8, seed=18), 3)
    mask = torch.tensor([[True, False, True, False], [True, True, False, True]])
    ids, lps = ids.clone(), lps.clone()
    ids[0, 1], lps[0, 1] = -100, math.nan
    ids[1, 2], lps[1, 2] = 5, 0.0  # repeated id, probabilities summing to 3
    loss = SPARSE[name](student, ids, lps, mask, tail=tail)
    (grad,) = torch.autograd.grad(loss, student)
    kept = student.detach()[mask].clone().requires_grad_()
    expected = SPARSE[name](kept, ids[mask], lps[mask], tail=tail)
    (expected_grad,) = torch.autograd.grad(expected, kept)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(grad).all() and not grad[~mask].any()
    torch.testing.assert_close(grad[mask], expected_grad, rtol=1e-10, atol=1e-12)


def test_teacher_values_receive_no_gradient() -> None:
    student = logits(4, 6, seed=19).requires_grad_()
    ids, lps = stored_topk(logits(4, 6, seed=20), 2)
    lps = lps.clone().requires_grad_()
    topk_forward_kl(student, ids, lps).backward()
    assert lps.grad is None and student.grad is not None


def test_half_inputs_compute_in_float32() -> None:
    student = logits(3, 16, seed=21).to(torch.bfloat16)
    ids, lps = stored_topk(logits(3, 16, seed=22), 4)
    loss = topk_forward_kl(student, ids.int(), lps.to(torch.bfloat16))
    assert loss.dtype == torch.float32
    exact = topk_forward_kl(student.double(), ids, lps.to(torch.bfloat16).double())
    torch.testing.assert_close(loss.double(), exact, rtol=1e-5, atol=1e-6)


def test_reduction_averages_over_tokens_not_token_k_pairs() -> None:
    # Doubling k with zero-probability extra entries must not halve the loss.
    vocab = 10
    student, teacher = logits(5, vocab, seed=23), logits(5, vocab, seed=24)
    ids, lps = stored_topk(teacher, 3)
    spare = torch.stack(
        [torch.tensor([i for i in range(vocab) if i not in row][:3]) for row in ids]
    )
    wide_ids = torch.cat([ids, spare], -1)
    wide_lps = torch.cat([lps, torch.full((5, 3), -math.inf, dtype=torch.float64)], -1)
    narrow = topk_forward_kl(student, ids, lps, tail="renormalize")
    wide = topk_forward_kl(student, wide_ids, wide_lps, tail="renormalize")
    torch.testing.assert_close(narrow, wide, rtol=1e-12, atol=1e-12)


def test_teacher_topk_returns_the_full_log_softmax_top_k() -> None:
    teacher = logits(2, 3, 7, seed=25)
    ids, lps = teacher_topk(teacher, 3, temperature=2.0)
    values, expected_ids = torch.log_softmax(teacher / 2.0, -1).topk(3, -1)
    assert torch.equal(ids, expected_ids) and torch.equal(lps, values)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda s, i, lp: (s, i.clone().fill_(8), lp), ValueError, r"\[0, V=8\)"),
        (lambda s, i, lp: (s, i[..., [0, 0, 1]], lp), ValueError, "distinct"),
        (lambda s, i, lp: (s, i, lp + 2.0), ValueError, "were logits passed"),
        (lambda s, i, lp: (s, i, lp[..., :2]), ValueError, "one shape"),
        (lambda s, i, lp: (s[:1], i, lp), ValueError, "token shape"),
        (lambda s, i, lp: (s, i.double(), lp), TypeError, "integer"),
        (lambda s, i, lp: (s, i, lp.fill_(-math.inf)), ValueError, "-inf"),
    ],
)
def test_bad_inputs_are_rejected_with_a_clear_error(
    change: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
    error: type[Exception],
    match: str,
) -> None:
    student = logits(2, 8, seed=26)
    ids, lps = stored_topk(logits(2, 8, seed=27), 3)
    with pytest.raises(error, match=match):
        topk_forward_kl(*change(student, ids, lps.clone()))


def test_bad_options_are_rejected() -> None:
    student = logits(2, 8, seed=28)
    ids, lps = stored_topk(logits(2, 8, seed=29), 3)
    with pytest.raises(ValueError, match="tail"):
        topk_forward_kl(student, ids, lps, tail="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        topk_reverse_kl(student, ids, lps, storage_temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        topk_generalized_jsd(student, ids, lps, beta=1.5)
    with pytest.raises(ValueError, match="k must lie"):
        teacher_topk(student, 9)


def test_demo_task_trains_the_student_from_the_cache() -> None:
    # The top-k demo builds its cache through write_teacher_cache/TeacherCache and a few
    # steps of topk_forward_kl bring the student closer to the teacher.
    from reference_impls.demos import DemoConfig, divergence
    from reference_impls.demos.logit_tasks import sparse_topk_task
    from reference_impls.registry import spec_of

    cfg = DemoConfig(n_train=64, n_eval=32, batch_size=16, lr=2e-2)
    torch.manual_seed(0)
    spec = spec_of("topk_forward_kl")
    task = sparse_topk_task(spec, cfg, torch.device("cpu"), torch.Generator())
    optimizer = torch.optim.Adam(task.params, lr=cfg.lr)
    before = divergence(task, cfg)
    for step in range(25):
        batch = tuple(t[step % 4 * 16 : step % 4 * 16 + 16] for t in task.pool)
        optimizer.zero_grad()
        task.step(batch)[0].backward()
        optimizer.step()
    assert divergence(task, cfg) < 0.7 * before
