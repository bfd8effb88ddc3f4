r"""REINFORCE with a per-token KL penalty to a reference policy (RL from a distilled reward).

After a reward model has been distilled from AI feedback (RLAIF), the student policy is tuned
to maximise (survey Eq. 13)

.. math::
    J(\theta) = \mathbb{E}_{y \sim q_\theta}[r(y)]
        - \beta\, \mathrm{KL}\big(q_\theta \,\|\, \pi_{\mathrm{ref}}\big),
    \qquad \mathrm{KL} = \mathbb{E}_{y\sim q_\theta}\Big[\sum_t
        \log\frac{q_\theta(y_t\mid y_{<t})}{\pi_{\mathrm{ref}}(y_t\mid y_{<t})}\Big].
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.tokens import upcast


def kl_regularized_pg_loss(
    logps: Tensor, ref_logps: Tensor, rewards: Tensor, mask: Tensor, *, kl_coef: float
) -> Tensor:
    r"""Score-function surrogate whose gradient is an unbiased estimate of :math:`-\nabla J`.

    Inputs, for ``B`` sequences sampled from the policy :math:`q_\theta`:
    ``logps`` ``[B, T]`` log-probabilities :math:`\log q_\theta(y_t \mid y_{<t})` of the sampled
    tokens (differentiable); ``ref_logps`` ``[B, T]`` the same tokens under the reference;
    ``rewards`` ``[B]`` one scalar reward per sequence; ``mask`` ``[B, T]`` marks the response
    tokens (prompt and padding are 0). With the per-token log-ratio estimate
    :math:`k_t = \log q_\theta(y_t\mid y_{<t}) - \log\pi_{\mathrm{ref}}(y_t\mid y_{<t})` the
    shaped return of token :math:`t` is the reward minus the KL penalty still to come,

    .. math::
        G_t = r(y) - \beta \sum_{t' \ge t} m_{t'}\, k_{t'}, \qquad
        \mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \sum_{t} m_{b,t}\,
            \mathrm{sg}(G_{b,t})\, \log q_\theta(y_{b,t} \mid y_{b,<t}),

    with :math:`\beta` = ``kl_coef`` and :math:`\mathrm{sg}` the stop-gradient. Reductions:
    **sum over the tokens of a sequence, mean over sequences** -- this is what makes
    :math:`\mathbb{E}_{y\sim q_\theta}[\nabla\mathcal{L}] = -\nabla J` exact (a token mean would
    reweight sequences by their length). Why: :math:`\nabla J = \mathbb{E}[\sum_t \nabla\log
    q(y_t\mid y_{<t})\,(r - \beta\sum_{t'} k_{t'})] - \beta\,\mathbb{E}[\sum_t \nabla k_t]`; the
    last term is :math:`\mathbb{E}[\nabla \log q] = 0`, and penalties with :math:`t' < t` drop out
    because they do not depend on :math:`y_t` (causality). Empty batches and fully masked
    sequences contribute 0 (zero gradient).
    """
    if logps.dim() != 2 or ref_logps.shape != logps.shape or mask.shape != logps.shape:
        raise ValueError(
            "logps, ref_logps and mask must all be [B, T]; got "
            f"{tuple(logps.shape)}, {tuple(ref_logps.shape)}, {tuple(mask.shape)}"
        )
    if rewards.shape != logps.shape[:1]:
        raise ValueError(f"rewards must be [B] = {tuple(logps.shape[:1])}, got {rewards.shape}")
    logps = upcast(logps)
    counted = mask.bool()
    log_ratio = torch.where(counted, logps - ref_logps.to(logps.dtype), 0.0).detach()
    penalty_to_go = log_ratio.flip(-1).cumsum(-1).flip(-1)  # sum over t' >= t
    returns = rewards.to(logps.dtype).detach().unsqueeze(-1) - kl_coef * penalty_to_go
    surrogate = torch.where(counted, returns * logps, 0.0)
    return -surrogate.sum() / max(logps.shape[0], 1)
