r"""Pairwise preference losses used when a teacher supplies preferences instead of logits.

Distilled DPO (Zephyr), SPIN and self-rewarding LMs fit the policy directly to AI-labelled
preference pairs; RLAIF and UltraFeedback first fit a Bradley-Terry reward model to them.
Inputs are per-example scalars (``[B]``); sequence log-probabilities are computed by the
caller (sum of the response tokens' log-probabilities).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from reference_impls.tokens import upcast


def _same_shape_float(*tensors: Tensor) -> list[Tensor]:
    """Check equal non-empty shapes and upcast half precision to float32."""
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors):
        raise ValueError(f"inputs must share one shape, got {[tuple(t.shape) for t in tensors]}")
    if tensors[0].numel() == 0:
        raise ValueError("inputs must contain at least one pair")
    return [upcast(t) for t in tensors]


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    r"""Direct Preference Optimization loss (Rafailov et al., 2023), batch mean.

    .. math::
        \mathcal{L}_{\mathrm{DPO}} = -\frac{1}{B}\sum_{b} \log\sigma\Big(\beta\big[
            (\log\pi_\theta(y_w) - \log\pi_{\mathrm{ref}}(y_w))
            - (\log\pi_\theta(y_l) - \log\pi_{\mathrm{ref}}(y_l))\big]\Big)

    computed with ``logsigmoid`` so large margins neither overflow nor lose precision.
    """
    pc, pr, rc, rr = _same_shape_float(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    margin = beta * ((pc - rc) - (pr - rr))
    return -F.logsigmoid(margin).mean()


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    r"""Bradley-Terry negative log-likelihood of reward-model preferences, batch mean.

    .. math::
        \mathcal{L}_{\mathrm{BT}} = -\frac{1}{B}\sum_b \log\sigma\big(r(x, y_w) - r(x, y_l)\big)
    """
    chosen, rejected = _same_shape_float(chosen_rewards, rejected_rewards)
    return -F.logsigmoid(chosen - rejected).mean()
