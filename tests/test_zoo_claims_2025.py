"""The zoo's TAID and ABKD claims follow their pre-registered criteria (lower held-out KL(p||q)
than both forward_kl and reverse_kl), on hand-made results."""

from __future__ import annotations

from typing import Any

import pytest

from reference_impls.zoo import evaluate_claims
from reference_impls.zoo.results import METRIC_DEFINITIONS


def _results(forward_kls: dict[str, list[float]]) -> dict[str, Any]:
    """Results in the report's shape: one held-out forward KL per seed (other metrics 0.5)."""
    out: dict[str, Any] = {}
    for loss, per_seed in forward_kls.items():
        others = dict.fromkeys(METRIC_DEFINITIONS, 0.5)
        runs = [{"metrics": {**others, "forward_kl": v}, "grad_norm_max": 1.0} for v in per_seed]
        mean = {**others, "forward_kl": sum(per_seed) / len(per_seed), "grad_norm_max": 1.0}
        out[loss] = {"mean": mean, "runs": runs}
    return out


@pytest.mark.parametrize(("claim", "loss"), [("taid", "taid_loss"), ("abkd", "ab_divergence")])
def test_beats_forward_and_reverse_kl_claims(claim: str, loss: str) -> None:
    key = f"{claim}_beats_fkl_and_rkl"
    results = _results(
        {"forward_kl": [1.0, 1.0], "reverse_kl": [3.0, 3.0], loss: [0.5, 1.25]}  # mean 0.875
    )
    verdict = {c["id"]: c for c in evaluate_claims(results, 2)}[key]
    assert verdict["reproduced"] is True
    assert verdict["seeds_agreeing"] == 1  # the second seed is worse than forward_kl
    assert verdict["evidence"] == {
        f"{loss}.forward_kl": 0.875,
        "forward_kl.forward_kl": 1.0,
        "reverse_kl.forward_kl": 3.0,
    }
    # beating reverse KL alone is not enough
    results = _results({"forward_kl": [1.0], "reverse_kl": [3.0], loss: [1.2]})
    assert {c["id"]: c for c in evaluate_claims(results, 1)}[key]["reproduced"] is False
    # without the baselines the claim is not run
    results = _results({loss: [0.5]})
    verdict = {c["id"]: c for c in evaluate_claims(results, 1)}[key]
    assert verdict["reproduced"] is None and "forward_kl" in verdict["note"]
