r"""MiniLLM: reverse-KL distillation by policy gradient on student samples (Gu et al., 2024).

MiniLLM minimises the *sequence-level* reverse KL :math:`\mathrm{KL}(q_\theta\|p) =
\mathbb{E}_{y\sim q_\theta}[\log q_\theta(y) - \log p(y)]` from the student :math:`q_\theta` to the
teacher :math:`p`. Its gradient is a policy gradient with per-token reward
:math:`r_t = \log p(y_t\mid y_{<t}) - \log q_\theta(y_t\mid y_{<t})`; MiniLLM splits each token's
return into the step's own reward, whose expectation over :math:`y_t` is computed exactly from the
full vocabulary (single-step term, low variance), and the rewards strictly after it (long-term
term, estimated by REINFORCE). Length normalisation and discounting are MiniLLM's variance
reductions; teacher-mixed sampling and the PPO clipping of the paper are left to the trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import kl_per_token, reduce_tokens, upcast


def minillm_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    sampled_ids: Tensor,
    mask: Tensor,
    *,
    gamma: float = 1.0,
    length_norm: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""MiniLLM surrogate loss on sequences sampled from the student.

    Shapes: logits ``[B, T, V]`` (one vocabulary), ``sampled_ids`` and ``mask`` ``[B, T]``;
    ``student_logits[:, t]`` is the student distribution :math:`q_t = q_\theta(\cdot\mid y_{<t})`
    that produced ``sampled_ids[:, t]`` (pre-shifted). ``mask`` marks response tokens. The teacher
    is a fixed reward model: its logits are detached, gradients reach the student only. With
    :math:`m_t` the mask and :math:`r_t = \log p_t(y_t) - \log q_t(y_t)` (stop-gradient),

    .. math::
        \mathcal{L} = \sum_{b}\sum_{t} m_t \Big[\underbrace{\mathrm{KL}(q_t \,\|\, p_t)}_{
            \text{single step, full vocabulary}}
            - \mathrm{sg}(R_{t+1})\, \log q_t(y_t)\Big],
        \qquad R_{t+1} = \sum_{t' > t} \gamma^{t'-t}\, m_{t'} r_{t'},

    so that :math:`r_t + R_{t+1}` is the discounted return from :math:`t`. With
    ``length_norm`` :math:`R_{t+1}` is divided by the number of counted tokens after
    :math:`t`. ``reduction="sum"`` returns the sum above; ``"mean"`` divides it by the number of
    counted tokens (0 with zero gradient if there are none).

    Exactness: for :math:`\gamma = 1`, no length normalisation and ``"sum"`` on one sampled
    sequence, :math:`\mathbb{E}_{y\sim q_\theta}[\nabla\mathcal{L}]
    = \nabla\,\mathrm{KL}(q_\theta\|p)`.
    Indeed :math:`\nabla\mathrm{KL} = -\mathbb{E}[\sum_t \nabla\log q_t(y_t)\,(r_t + R_{t+1})]`
    (the :math:`\mathbb{E}[\nabla \log q]` term vanishes, earlier rewards drop out by causality),
    and :math:`-\mathbb{E}_{y_t\sim q_t}[r_t \nabla\log q_t(y_t)] = \nabla\mathrm{KL}(q_t\|p_t)`
    with the prefix held fixed: the single-step term is that expectation in closed form.
    """
    if student_logits.dim() != 3 or teacher_logits.shape != student_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must both be [B, T, V]; got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if sampled_ids.shape != student_logits.shape[:2] or mask.shape != sampled_ids.shape:
        raise ValueError(
            f"sampled_ids {tuple(sampled_ids.shape)} and mask {tuple(mask.shape)} must be "
            f"[B, T] = {tuple(student_logits.shape[:2])}"
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    s = upcast(student_logits)
    log_q = s.log_softmax(-1)
    log_p = teacher_logits.detach().to(s.dtype).log_softmax(-1)
    counted = mask.bool()
    ids = sampled_ids.masked_fill(~counted, 0).long().unsqueeze(-1)
    log_q_y = log_q.gather(-1, ids).squeeze(-1)
    rewards = torch.where(counted, log_p.gather(-1, ids).squeeze(-1) - log_q_y, 0.0).detach()

    future = torch.zeros_like(rewards)  # R_{t+1}
    n_after = torch.zeros_like(rewards)  # counted tokens after t
    running, count = rewards.new_zeros(rewards.shape[0]), rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        future[:, t], n_after[:, t] = gamma * running, count
        running = rewards[:, t] + gamma * running  # discounted return from t
        count = count + counted[:, t]
    if length_norm:
        future = future / n_after.clamp(min=1)

    single_step = kl_per_token(log_q, log_p)
    per_token = single_step - future * log_q_y
    if reduction == "sum":
        return torch.where(counted, per_token, 0.0).sum()
    return reduce_tokens(per_token, counted)
