r"""On-policy distillation (OPD): the student samples, the teacher grades each sampled token.

The 2025 recipes (Thinking Machines' "On-Policy Distillation" and its Tinker cookbook; the
on-policy stage of Qwen3, arXiv 2505.09388) train the student :math:`q_\theta` on its own samples
with a per-token reward :math:`r_t = \log p(y_t\mid c_t) - \log q_{\text{old}}(y_t\mid c_t)`, the
negated single-sample estimate of the reverse KL, and an importance-sampling policy-gradient
surrogate. Beside the loss: Schulman's KL estimators (:func:`kl_estimators`, with the trap of
differentiating them) and the interleaved sampler of Speculative KD (:func:`speculative_kd_sample`,
Xu et al., ICLR 2025), in which the teacher replaces student proposals outside its top-k.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from reference_impls.tokens import check_mask, reduce_tokens, upcast


def opd_policy_gradient_loss(
    student_logits: Tensor,
    sampled_ids: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor | None = None,
    *,
    old_logprobs: Tensor | None = None,
    discount: float = 0.0,
    coef: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Importance-sampling policy-gradient surrogate of on-policy distillation.

    Shapes: ``student_logits`` ``[B, T, V]`` where ``student_logits[:, t]`` is the student
    distribution :math:`q_\theta(\cdot\mid c_t)` that produced ``sampled_ids[:, t]``
    (pre-shifted); ``sampled_ids``, ``teacher_logprobs`` (:math:`\log p(y_t\mid c_t)` of the
    sampled tokens) and ``old_logprobs`` (:math:`\log q_{\text{old}}(y_t\mid c_t)` under the
    sampling policy) ``[B, T]``; ``mask`` bool ``[B, T]``, True where a token counts (``None``:
    all). ``old_logprobs=None`` means the samples come from the current student, detached. With
    :math:`m_t` the mask, :math:`\lambda` = ``coef``, :math:`\gamma` = ``discount``:

    .. math::
        r_t = -\big(\log q_{\text{old}}(y_t\mid c_t) - \log p(y_t\mid c_t)\big), \qquad
        A_t = \lambda \sum_{k \ge t} \gamma^{k-t}\, m_k\, r_k,

    .. math::
        \mathcal{L} = -\frac{1}{N} \sum_{b,t} m_{b,t}\,
            \frac{q_\theta(y_{b,t}\mid c_{b,t})}{q_{\text{old}}(y_{b,t}\mid c_{b,t})}\,
            \mathrm{sg}(A_{b,t}),

    the sum over :math:`k` running within the sequence of :math:`t` and :math:`\gamma^0 = 1`
    (so :math:`\gamma = 0` credits each token with its own reward only, the cookbook's
    default). Teacher and old log-probs are constants (detached). **Reduction:**
    ``"mean"`` (default) takes :math:`N` = the number of counted tokens of the batch;
    ``"sum"`` takes :math:`N = 1` (Tinker's summed ``importance_sampling`` loss). No counted
    token gives 0 with a zero gradient.

    **Exactness.** At :math:`\theta = \theta_{\text{old}}` the gradient is
    :math:`-\frac1N\sum_t A_t \nabla\log q_\theta(y_t\mid c_t)`; for one sequence
    :math:`y \sim q_\theta` and ``"sum"``,
    :math:`\gamma = 0` gives :math:`\mathbb{E}[\nabla\mathcal{L}] = \lambda\nabla_\theta
    \mathbb{E}_y[\sum_t \mathrm{KL}(q_\theta\|p)(c_t)]` with the prefix distribution held fixed,
    and :math:`\gamma = 1` gives :math:`\lambda\nabla_\theta \mathrm{KL}(q_\theta\|p)` over whole
    sequences (MiniLLM's objective). ``"mean"`` divides by a count that depends on the sample
    when sequences stop at EOS, which reweights sequences by their length: it is exact (up to
    the constant :math:`1/N`) only when every sample has the same number of counted tokens.
    """
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must be [B, T, V], got {tuple(student_logits.shape)}")
    token_shape = student_logits.shape[:2]
    for name, x in (("sampled_ids", sampled_ids), ("teacher_logprobs", teacher_logprobs)):
        if x.shape != token_shape:
            raise ValueError(f"{name} {tuple(x.shape)} must be [B, T] = {tuple(token_shape)}")
    if old_logprobs is not None and old_logprobs.shape != token_shape:
        raise ValueError(
            f"old_logprobs {tuple(old_logprobs.shape)} must be [B, T] = {tuple(token_shape)}"
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must lie in [0, 1], got {discount}")
    counted = check_mask(mask, student_logits)
    log_q = upcast(student_logits).log_softmax(-1)
    ids = sampled_ids.masked_fill(~counted, 0).long().unsqueeze(-1)
    log_q_y = log_q.gather(-1, ids).squeeze(-1)
    old = log_q_y if old_logprobs is None else old_logprobs.to(log_q_y.dtype)
    log_p = teacher_logprobs.to(log_q_y.dtype)
    rewards = torch.where(counted, log_p - old, 0.0).detach()

    advantages = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):  # A_t = r_t + discount * A_{t+1}
        running = rewards[:, t] + discount * running
        advantages[:, t] = running
    ratio = torch.exp(log_q_y - old.detach())
    per_token = torch.where(counted, -ratio * coef * advantages, 0.0)
    if reduction == "sum":
        return per_token.sum()
    return reduce_tokens(per_token, counted)


class KLEstimates(NamedTuple):
    """Schulman's three single-sample estimates of :math:`\\mathrm{KL}(q\\|p)`, per sample."""

    k1: Tensor
    k2: Tensor
    k3: Tensor


def kl_estimators(logq: Tensor, logp: Tensor) -> KLEstimates:
    r"""Per-sample estimators of :math:`\mathrm{KL}(q\|p)` from tokens :math:`y \sim q`.

    ``logq`` and ``logp`` are :math:`\log q(y)` and :math:`\log p(y)` of the *sampled* tokens
    (same shape, any). With :math:`\log\rho = \log p(y) - \log q(y)`:

    .. math::
        k_1 = -\log\rho, \qquad k_2 = \tfrac12 (\log\rho)^2, \qquad
        k_3 = (\rho - 1) - \log\rho .

    :math:`\mathbb{E}_q[k_1] = \mathbb{E}_q[k_3] = \mathrm{KL}(q\|p)` (unbiased; :math:`k_3 \ge 0`
    has the lower variance), :math:`k_2` is biased (exact only to second order as :math:`p \to q`).

    **Trap: these are estimates of a value, not losses.** Differentiating them with the samples
    held fixed does not give :math:`\nabla\mathrm{KL}(q_\theta\|p)`: the expected gradient of
    :math:`k_1` is :math:`\mathbb{E}_q[\nabla\log q_\theta] = 0`, and that of :math:`k_3` is the
    *forward*-KL gradient, :math:`q - p` in logit space. Use :math:`-k_1` as a reward in a
    policy gradient (:func:`opd_policy_gradient_loss`) to minimise the reverse KL.
    """
    if logq.shape != logp.shape:
        raise ValueError(f"logq {tuple(logq.shape)} and logp {tuple(logp.shape)} must match")
    log_ratio = logp - logq
    return KLEstimates(-log_ratio, 0.5 * log_ratio**2, torch.expm1(log_ratio) - log_ratio)


@torch.no_grad()
def speculative_kd_sample(
    student_logits: Tensor, teacher_logits: Tensor, *, top_k: int, generator: torch.Generator
) -> Tensor:
    r"""One interleaved sampling step of Speculative KD: ids ``[...]`` from logits ``[..., V]``.

    The student proposes :math:`y \sim q`; if :math:`y` is not among the teacher's ``top_k``
    most likely tokens, it is replaced by a fresh draw :math:`y \sim p`. The law of the result
    is

    .. math::
        P(y) = q(y)\,\mathbf{1}[y \in \mathrm{Top}K(p)]
            + \Big(\sum_{y' \notin \mathrm{Top}K(p)} q(y')\Big)\, p(y),

    so ``top_k = V`` samples the student (on-policy) and ``top_k = 0`` the teacher. Logits are
    used as given: apply sampling temperatures before the call. Ties at the k-th teacher
    probability are broken by ``torch.topk``. Both draws are made for every position (one
    student and one teacher draw from ``generator``), so the random stream does not depend on
    acceptance.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() == 0:
        raise ValueError(
            "student_logits and teacher_logits must share one [..., V] shape; got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    vocab = student_logits.shape[-1]
    if not 0 <= top_k <= vocab:
        raise ValueError(f"top_k must lie in [0, V={vocab}], got {top_k}")
    q = upcast(student_logits).reshape(-1, vocab).softmax(-1)
    p = upcast(teacher_logits).reshape(-1, vocab).softmax(-1)
    proposal = torch.multinomial(q, 1, generator=generator)
    fallback = torch.multinomial(p, 1, generator=generator)
    in_top = torch.zeros_like(p, dtype=torch.bool)
    in_top.scatter_(-1, p.topk(top_k, dim=-1).indices, True)
    accepted = in_top.gather(-1, proposal)
    return torch.where(accepted, proposal, fallback).reshape(student_logits.shape[:-1])
