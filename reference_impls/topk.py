r"""Distillation from a teacher's stored top-k log-probabilities (offline, sparse targets).

**Setting.** For every token the teacher's :math:`k` most likely ids :math:`I` and their
log-probabilities :math:`a_i = \log p_{T_s}(i)` were stored (a log-softmax over the *full*
vocabulary at the storage temperature :math:`T_s`, so :math:`\sum_{i \in I} e^{a_i} \le 1`; see
:mod:`reference_impls.teacher_cache`). The student keeps its full logits :math:`z`, with
:math:`Q = \mathrm{softmax}(z / T)` over the whole vocabulary. Conventions as for the other
token-level losses: no :math:`T^2` factor, the stored teacher values are constants (no gradient),
half inputs are computed in float32, and the per-token value is **summed over its k (+1)
entries, then averaged over counted tokens** (never divided by the number of (token, k) pairs).

**Teacher at the training temperature** :math:`T`. With :math:`\alpha = T_s / T`,
:math:`p_T(v) \propto p_{T_s}(v)^{\alpha}` over the vocabulary. Only the top-k are stored, so

* inside :math:`I` re-tempering is exact: :math:`\tilde p_T(i) = e^{\alpha a_i} / \sum_{j \in I}
  e^{\alpha a_j}` is the teacher at :math:`T` conditioned on :math:`I` (tempering keeps the
  order, so the top-k at :math:`T_s` are the top-k at :math:`T`);
* the split between :math:`I` and the tail needs :math:`\sum_{v \notin I} p_{T_s}(v)^{\alpha}`,
  which was not stored. We **keep the stored tail fraction** :math:`r = 1 - \sum_{i \in I}
  e^{a_i}`: :math:`p_T(i) \approx (1 - r)\, \tilde p_T(i)`. This is exact when :math:`T = T_s`
  (then the stored values are used unchanged) or :math:`r = 0`. Re-tempering the tail as one
  token (:math:`r^{\alpha}`) would be wrong in a worse way: the tail is many tokens, so
  :math:`r^{\alpha}` overstates it when sharpening (:math:`T < T_s`; as :math:`T \to 0` a tail
  heavier than the top token would take all the mass) and understates it when softening.
  Keeping :math:`r` never invents mass; store at the training temperature to be exact.

**Tail handling** (``tail``), over the slots :math:`I` plus one tail slot:

* ``"bucket"``: teacher :math:`P' = (p_T(i)_{i \in I},\, r)`, student :math:`Q' = (q_i)_{i \in I}
  \cup \{q_{\mathrm{tail}}\}` with :math:`q_{\mathrm{tail}} = \sum_{v \notin I} q_v`. Both sum
  to 1, so the loss is exactly the divergence between these coarsened distributions; at
  :math:`T = T_s` it is a **lower bound** of the dense divergence (merging outcomes never
  increases an f-divergence: the data-processing inequality).
* ``"renormalize"``: the teacher truncated to :math:`I` and renormalised, :math:`\tilde P`
  (zero outside :math:`I`, exact at any :math:`T`), against the full student :math:`Q`: forward
  KL and JSD are then exactly the dense divergences :math:`D(\tilde P, Q)`. It trains the student
  toward the truncated teacher, pushing its tail mass to 0. Reverse KL :math:`\mathrm{KL}(Q \|
  \tilde P)` is infinite as soon as the student has tail mass, so :func:`topk_reverse_kl` uses
  the student conditioned on :math:`I` instead (see there).

With :math:`k = V` the tail slot is empty and dropped: both modes equal the dense losses.

**Numerics.** The student's tail is :math:`\log q_{\mathrm{tail}} = \operatorname{logsumexp}_{v
\notin I} z_v / T - \operatorname{logsumexp}_v z_v / T` (top-k slots masked), not
:math:`\log(1 - \sum_{i \in I} q_i)`: no cancellation, so a small tail and its gradient stay
accurate; it is clamped below at the smallest normal number so that its log stays finite. The
teacher's :math:`r = -\mathrm{expm1}(\operatorname{logsumexp}_{i \in I} a_i)` is clamped to
:math:`[\text{tiny}, 1]` (rounded stored values, bfloat16 especially, can sum to slightly more
than 1; the top-k part is then renormalised to sum to 1).

**Sampled targets instead of the top-k** (Sparse Logit Sampling, Anshumann et al. 2025). The
top-k teacher is biased: its optimum is the truncated teacher. :func:`teacher_sample` draws
:math:`N` ids per token from a proposal :math:`\pi \propto p_T^{1/T_\pi}` and keeps the
distinct ids with their counts :math:`c_v`; :func:`importance_weights` turns them into the
estimate :math:`\hat p_v = \frac{c_v}{N} \frac{p_T(v)}{\pi(v)}` (:math:`c_v / N` at
:math:`T_\pi = 1`), whose expectation is :math:`p_T` exactly, and :func:`sampled_kd_loss` is the
cross-entropy against it: an unbiased estimate of the dense soft cross-entropy and of its
gradient.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from reference_impls.tokens import (
    check_mask,
    check_temperature,
    kl_per_token,
    log_mix,
    reduce_tokens,
    upcast,
)

TailMode = Literal["bucket", "renormalize"]
_TAIL_MODES = ("bucket", "renormalize")
_SUM_TOLERANCE = 0.01  # stored top-k probabilities may sum to 1 + rounding (bfloat16: ~0.2 %)


def teacher_topk(
    teacher_logits: Tensor, k: int, *, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""The teacher's top-k ``(ids, logprobs)``, each ``[..., k]``, most likely first.

    ``logprobs`` are :math:`\log \mathrm{softmax}(z_t / T)` over the full vocabulary (float32
    for half inputs), the values :mod:`reference_impls.teacher_cache` stores; ``ids`` are int64.
    """
    check_temperature(temperature)
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must lie in [1, V={teacher_logits.shape[-1]}], got {k}")
    log_p = torch.log_softmax(upcast(teacher_logits.detach()) / temperature, dim=-1)
    values, ids = log_p.topk(k, dim=-1)
    return ids, values


def _log1mexp(x: Tensor) -> Tensor:
    r""":math:`\log(1 - e^{x})` for :math:`x \le 0`, accurate on both sides of :math:`-\log 2`.

    Used for the teacher's constant tail only (no gradient is taken through it).
    """
    near_zero = x > -math.log(2)
    x_near = torch.where(near_zero, x, torch.full_like(x, -math.log(2)))
    x_far = torch.where(near_zero, torch.full_like(x, -math.log(2)), x)
    return torch.where(near_zero, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def _check_sparse_pair(student_logits: Tensor, ids: Tensor, values: Tensor, names: str) -> None:
    """Shapes and dtypes every sparse target shares: integer ids and float values ``[..., m]``
    of one shape, with the student's token shape; ``names`` is e.g. ``"topk_ids/topk_logprobs"``."""
    id_name, value_name = names.split("/")
    s_shape, i_shape, v_shape = (tuple(t.shape) for t in (student_logits, ids, values))
    if student_logits.dim() == 0 or student_logits.shape[-1] == 0:
        raise ValueError(f"student logits need a non-empty vocabulary dimension, got {s_shape}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{id_name} must be an integer tensor, got dtype {ids.dtype}")
    if not values.is_floating_point():
        raise TypeError(f"{value_name} must be floating point, got dtype {values.dtype}")
    if i_shape != v_shape:
        raise ValueError(f"{id_name} {i_shape} and {value_name} {v_shape} must have one shape")
    if ids.dim() != student_logits.dim() or i_shape[:-1] != s_shape[:-1]:
        raise ValueError(
            f"{id_name} and {value_name} must be [..., m] with the student's token shape: "
            f"student logits {s_shape}, {id_name} {i_shape}"
        )


def _check_in_vocab(ids: Tensor, vocab: int, name: str) -> None:
    """Counted ids must index the student's vocabulary."""
    if ids.numel() and (bool((ids < 0).any()) or bool((ids >= vocab).any())):
        raise ValueError(
            f"{name} must lie in [0, V={vocab}), got values in [{int(ids.min())}, {int(ids.max())}]"
        )


def _check_topk_inputs(
    student_logits: Tensor, topk_ids: Tensor, topk_logprobs: Tensor, mask: Tensor | None
) -> Tensor:
    """Validate shapes, dtypes and (on counted tokens) values; return the bool mask."""
    _check_sparse_pair(student_logits, topk_ids, topk_logprobs, "topk_ids/topk_logprobs")
    i_shape, s_shape = tuple(topk_ids.shape), tuple(student_logits.shape)
    k, vocab = i_shape[-1], s_shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"k must lie in [1, V={vocab}], got k={k} (topk_ids {i_shape})")
    mask = check_mask(mask, student_logits)
    ids, a = topk_ids[mask], topk_logprobs.detach()[mask].float()
    if ids.numel() == 0:
        return mask
    _check_in_vocab(ids, vocab, "topk_ids")
    if k > 1 and bool((ids.sort(dim=-1).values.diff(dim=-1) == 0).any()):
        raise ValueError("topk_ids repeat an id within a token; the k ids must be distinct")
    if bool(a.isnan().any()) or bool((a == math.inf).any()):
        raise ValueError("topk_logprobs contain NaN or +inf at counted tokens")
    lse = a.logsumexp(dim=-1)
    if bool((lse == -math.inf).any()):
        raise ValueError("a counted token has all its top-k log-probabilities at -inf")
    if bool((lse > math.log1p(_SUM_TOLERANCE)).any()):
        raise ValueError(
            f"topk_logprobs must be log-probabilities over the full vocabulary (their exp sums "
            f"to at most 1), but a token's top-k sum to {float(lse.exp().max()):.4g}; were "
            "logits passed instead?"
        )
    return mask


def _slots(
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    mask: Tensor | None,
    temperature: float,
    storage_temperature: float,
    tail: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(log_q, log_p, mask)`` over the k top-k slots plus the tail slot (if k < V).

    ``log_q`` (student, with gradient) and ``log_p`` (teacher, constant) share one dtype. In
    ``renormalize`` mode the teacher's tail slot is ``-inf`` (probability 0).
    """
    if tail not in _TAIL_MODES:
        raise ValueError(f"tail must be one of {_TAIL_MODES}, got {tail!r}")
    check_temperature(temperature)
    check_temperature(storage_temperature)
    mask = _check_topk_inputs(student_logits, topk_ids, topk_logprobs, mask)
    z, a = upcast(student_logits), upcast(topk_logprobs.detach())
    dtype = torch.promote_types(z.dtype, a.dtype)
    z, a = z.to(dtype), a.to(dtype)
    k, vocab = topk_ids.shape[-1], z.shape[-1]
    # Masked tokens get harmless placeholders (distinct ids, uniform probabilities), so that
    # padding values never reach gather or produce NaN gradients.
    keep = mask.unsqueeze(-1)
    placeholder = torch.arange(k, device=z.device).expand(topk_ids.shape)
    ids = torch.where(keep, topk_ids.long(), placeholder)
    a = torch.where(keep, a, torch.full_like(a, -math.log(k)))

    # Student: log q_i = z_i / T - log Z over the full vocabulary, with log Z assembled from the
    # top-k part and the rest, whose logsumexp is also the (unnormalised) tail mass.
    scaled = z / temperature if temperature != 1.0 else z
    top = scaled.gather(-1, ids)
    if k == vocab:
        log_norm = top.logsumexp(dim=-1, keepdim=True)
    else:
        others = scaled.scatter(-1, ids, torch.finfo(dtype).min)  # finite: no NaN gradient
        log_rest = others.logsumexp(dim=-1, keepdim=True)
        log_norm = torch.logaddexp(top.logsumexp(dim=-1, keepdim=True), log_rest)
    log_q = top - log_norm
    alpha = storage_temperature / temperature
    stored_lse = a.logsumexp(dim=-1, keepdim=True)  # log of the stored top-k mass, 1 - r
    log_p_cond = torch.log_softmax(alpha * a, dim=-1)  # teacher at T conditioned on I: exact
    if tail == "renormalize":
        log_p = log_p_cond
    elif alpha == 1.0:
        log_p = a - stored_lse.clamp(min=0)  # the stored values themselves (sum capped at 1)
    else:
        log_p = log_p_cond + stored_lse.clamp(max=0)  # re-tempered shape, stored tail fraction
    if k == vocab:  # the tail is empty
        return log_q, log_p, mask

    tiny = torch.finfo(dtype).tiny
    log_q_tail = (log_rest - log_norm).clamp(min=math.log(tiny))
    if tail == "renormalize":
        log_p_tail = torch.full_like(log_q_tail, -math.inf)
    else:
        log_p_tail = _log1mexp(stored_lse.clamp(max=0)).clamp(min=math.log(tiny))
    return torch.cat([log_q, log_q_tail], dim=-1), torch.cat([log_p, log_p_tail], dim=-1), mask


def topk_forward_kl(
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    storage_temperature: float = 1.0,
    tail: TailMode = "bucket",
) -> Tensor:
    r"""Forward KL from stored teacher top-k log-probabilities against the full student.

    ``bucket`` (default), with the teacher's tail fraction :math:`r` as one extra slot:

    .. math:: \sum_{i \in I} p_T(i) \log \frac{p_T(i)}{q_i} + r \log \frac{r}{1 - \sum_{i \in I}
        q_i}

    a lower bound of the dense :math:`\mathrm{KL}(P \| Q)` at :math:`T = T_s`, equal to it at
    :math:`k = V`. ``renormalize``: :math:`\mathrm{KL}(\tilde P \| Q) = \sum_{i \in I} \tilde
    p_T(i) \log (\tilde p_T(i) / q_i)` with the truncated, renormalised teacher.
    ``topk_ids``/``topk_logprobs`` are ``[..., k]`` (from
    :func:`teacher_topk` at ``storage_temperature``), ``student_logits`` ``[..., V]``; see the
    module docstring for the re-tempering when ``temperature != storage_temperature``.
    """
    log_q, log_p, mask = _slots(
        student_logits, topk_ids, topk_logprobs, mask, temperature, storage_temperature, tail
    )
    return reduce_tokens(kl_per_token(log_p, log_q), mask)


def _reverse_kl_per_token(log_q: Tensor, log_p: Tensor, k: int, tail: str) -> Tensor:
    """Per-token reverse KL on the slots; ``renormalize`` conditions the student on the top-k."""
    if tail == "renormalize":
        top = log_q[..., :k]
        return kl_per_token(top - top.logsumexp(dim=-1, keepdim=True), log_p[..., :k])
    return kl_per_token(log_q, log_p)


def topk_reverse_kl(
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    storage_temperature: float = 1.0,
    tail: TailMode = "bucket",
) -> Tensor:
    r"""Reverse KL on the teacher's top-k support: an approximation of :math:`\mathrm{KL}(Q \| P)`.

    ``bucket``: the reverse KL between the coarsened distributions,

    .. math:: \sum_{i \in I} q_i \log \frac{q_i}{p_T(i)} + q_{\mathrm{tail}} \log
        \frac{q_{\mathrm{tail}}}{r}

    a lower bound of the dense reverse KL at :math:`T = T_s` (the tail tokens are compared as
    one). The teacher's :math:`r = 1 - \sum_{i \in I} p_{T_s}(i)` is only known to the
    precision of the stored values (about :math:`10^{-7}` in float32, :math:`2 \cdot 10^{-3}`
    in bfloat16) and :math:`\log r` amplifies that error when :math:`r` is that small; if it
    rounds to 0 the clamp to the smallest normal number makes any student tail very costly.

    ``renormalize``: :math:`\mathrm{KL}(\tilde Q \| \tilde P)` with both conditioned on
    :math:`I` (:math:`\tilde q_i = q_i / \sum_{j \in I} q_j`), because :math:`\mathrm{KL}(Q
    \| \tilde P)` is infinite; the student's tail mass is then invisible to the loss. Both
    modes equal the dense reverse KL at :math:`k = V`.
    """
    log_q, log_p, mask = _slots(
        student_logits, topk_ids, topk_logprobs, mask, temperature, storage_temperature, tail
    )
    return reduce_tokens(_reverse_kl_per_token(log_q, log_p, topk_ids.shape[-1], tail), mask)


def topk_generalized_jsd(
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    storage_temperature: float = 1.0,
    tail: TailMode = "bucket",
    beta: float = 0.5,
) -> Tensor:
    r"""Generalised JSD (GKD's convention, as :func:`reference_impls.generalized_jsd`) on the slots.

    .. math:: \beta\, \mathrm{KL}(P' \| M) + (1 - \beta)\, \mathrm{KL}(Q' \| M), \qquad
        M = \beta P' + (1 - \beta) Q'

    over the top-k slots plus the tail slot, with :math:`\beta = 0` giving
    :func:`topk_forward_kl` and :math:`\beta = 1` :func:`topk_reverse_kl` (same ``tail``).
    ``bucket``: the JSD of the coarsened distributions, a lower bound of the dense one at
    :math:`T = T_s`; ``renormalize``: exactly :math:`\mathrm{JSD}_\beta(\tilde P, Q)` over the
    vocabulary (:math:`\tilde P` vanishes on the tail, whose tokens then contribute only through
    the student's total tail mass). Both equal the dense loss at :math:`k = V`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    log_q, log_p, mask = _slots(
        student_logits, topk_ids, topk_logprobs, mask, temperature, storage_temperature, tail
    )
    if beta == 0.0:
        return reduce_tokens(kl_per_token(log_p, log_q), mask)
    if beta == 1.0:
        per_token = _reverse_kl_per_token(log_q, log_p, topk_ids.shape[-1], tail)
        return reduce_tokens(per_token, mask)
    p, q = log_p.exp(), log_q.exp()
    log_m = log_mix(p, q, beta)
    per_token = beta * kl_per_token(log_p, log_m, p) + (1 - beta) * kl_per_token(log_q, log_m, q)
    return reduce_tokens(per_token, mask)


# ---------------------------------------------------------------------- sampled targets


class TeacherSample(NamedTuple):
    r"""Distinct sampled ids of ``n`` tokens, flattened: token ``t`` owns ``n_unique[t]`` entries.

    ``ids`` ascend within a token; ``counts`` say how often each was drawn (they sum to ``N``
    per token); ``logprobs`` are :math:`\log p_T` and ``proposal_logprobs`` :math:`\log \pi`
    at those ids. All ``[entries]`` except ``n_unique`` ``[n]``; integers are int64.
    """

    n_unique: Tensor
    ids: Tensor
    counts: Tensor
    logprobs: Tensor
    proposal_logprobs: Tensor


@torch.no_grad()
def teacher_sample(
    teacher_logits: Tensor,
    samples: int,
    *,
    temperature: float = 1.0,
    proposal_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> TeacherSample:
    r"""Draw ``samples`` ids per token from :math:`\pi \propto p_T^{1/T_\pi}`; keep distinct ones.

    ``teacher_logits`` ``[..., V]`` (flattened to ``[n, V]``), :math:`p_T = \mathrm{softmax}(z_t
    / T)` with ``temperature`` :math:`T`, :math:`\pi = \mathrm{softmax}(z_t / (T\, T_\pi))`.
    Draws are with replacement, from ``generator`` (on the logits' device) if given.
    """
    check_temperature(temperature)
    check_temperature(proposal_temperature)
    vocab = teacher_logits.shape[-1]
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    log_p = torch.log_softmax(upcast(teacher_logits.detach()).reshape(-1, vocab) / temperature, -1)
    log_pi = (
        log_p
        if proposal_temperature == 1.0
        else torch.log_softmax(log_p / proposal_temperature, -1)
    )
    draws = torch.multinomial(log_pi.exp(), samples, replacement=True, generator=generator)
    draws = draws.sort(dim=-1).values
    first = torch.ones_like(draws, dtype=torch.bool)  # the first draw of each distinct id
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]
    starts = first.flatten().nonzero().squeeze(-1)
    end = torch.tensor([draws.numel()], device=draws.device)
    counts = torch.diff(starts, append=end)
    n_unique = first.sum(dim=-1)
    ids = draws[first]
    rows = torch.repeat_interleave(torch.arange(len(draws), device=draws.device), n_unique)
    return TeacherSample(n_unique, ids, counts, log_p[rows, ids], log_pi[rows, ids])


def importance_weights(
    counts: Tensor,
    samples: int,
    logprobs: Tensor | None = None,
    proposal_logprobs: Tensor | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""The unbiased estimate :math:`\hat p_v = \frac{c_v}{N} \frac{p(v)}{\pi(v)}` of the teacher.

    Without log-probabilities (proposal = teacher, :math:`T_\pi = 1`): :math:`c_v / N`, which sums
    to 1 per token. Otherwise the ratio :math:`e^{\log p - \log \pi}` reweights each count and
    the sum is 1 only in expectation: the weights are deliberately **not** renormalised
    (self-normalising would bias the estimate). ``dtype``: float32 unless the log-probs are
    float64 (then float64).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if (logprobs is None) != (proposal_logprobs is None):
        raise ValueError("pass both logprobs and proposal_logprobs, or neither")
    if dtype is None:
        wide = logprobs is not None and logprobs.dtype == torch.float64
        dtype = torch.float64 if wide else torch.float32
    weights = counts.to(dtype) / samples
    if logprobs is not None and proposal_logprobs is not None:
        weights = weights * (logprobs.to(dtype) - proposal_logprobs.to(dtype)).exp()
    return weights


def _check_sampled_inputs(
    student_logits: Tensor, ids: Tensor, weights: Tensor, mask: Tensor | None
) -> Tensor:
    """Validate shapes, dtypes and (on counted tokens) values; return the bool mask."""
    _check_sparse_pair(student_logits, ids, weights, "ids/weights")
    mask = check_mask(mask, student_logits)
    kept_ids, kept_w = ids[mask], weights.detach()[mask]
    _check_in_vocab(kept_ids, student_logits.shape[-1], "ids")
    if kept_w.numel() and not bool(((kept_w >= 0) & kept_w.isfinite()).all()):
        raise ValueError("weights must be finite and >= 0 at counted tokens")
    return mask


def sampled_kd_loss(
    student_logits: Tensor,
    ids: Tensor,
    weights: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> Tensor:
    r"""Cross-entropy against a sampled, importance-weighted teacher (Sparse Logit Sampling).

    .. math:: \mathcal L = -\sum_{j} \hat p_j \log q_T(v_j), \qquad
        \frac{\partial \mathcal L}{\partial z_u} = \frac{1}{T}\Big(\big(\textstyle\sum_j
        \hat p_j\big)\, q_T(u) - \hat p_u\Big)

    per token, averaged over counted tokens, with ``ids`` :math:`v_j` and ``weights``
    :math:`\hat p_j` ``[..., m]`` (from :func:`importance_weights`, e.g. read back with
    :class:`reference_impls.teacher_cache.TeacherCache`; padding slots carry weight 0, a
    repeated id simply adds its weights) and :math:`q_T = \mathrm{softmax}(z / T)` over the full
    vocabulary. Since :math:`E[\hat p] = p`, the expected loss is the dense soft cross-entropy
    :math:`\mathrm{KL}(p \| q) + H(p)` and the expected logit gradient is :math:`(q - p) / T`.
    The weights are constants (detached) and used as given, not renormalised.
    """
    check_temperature(temperature)
    mask = _check_sampled_inputs(student_logits, ids, weights, mask)
    log_q = torch.log_softmax(upcast(student_logits) / temperature, dim=-1)
    w = upcast(weights.detach())
    dtype = torch.promote_types(log_q.dtype, w.dtype)
    keep = mask.unsqueeze(-1)
    safe_ids = torch.where(keep, ids.long(), torch.zeros_like(ids, dtype=torch.long))
    w = torch.where(keep, w.to(dtype), torch.zeros((), dtype=dtype, device=w.device))
    per_token = -(w * log_q.to(dtype).gather(-1, safe_ids)).sum(dim=-1)
    return reduce_tokens(per_token, mask)
