r"""Claims of the literature the zoo tests, each with a pre-registered numeric criterion.

:func:`evaluate_claims` applies every criterion to the means over seeds (the verdict) and to
each seed alone (how many seeds agree), and records the numbers it used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference_impls.zoo.results import METRIC_DEFINITIONS, ClaimVerdict, LossResult, run_value

Lookup = Callable[[str, str], float]  # (loss, metric) -> value


@dataclass(frozen=True)
class Claim:
    """A claim of the literature and the pre-registered test of it on the zoo's numbers.

    ``check`` receives a lookup ``(loss, metric) -> value`` and says whether the numbers agree;
    it is applied to the means over seeds (the verdict) and to each seed alone (robustness).
    ``uses`` lists the ``(loss, metric)`` pairs it reads, reported as evidence.
    """

    id: str
    statement: str
    sources: tuple[str, ...]
    criterion: str
    uses: tuple[tuple[str, str], ...]
    check: Callable[[Lookup], bool]

    @property
    def losses(self) -> set[str]:
        """The losses the check needs."""
        return {loss for loss, _ in self.uses}


def _non_increasing(values: Sequence[float]) -> bool:
    return all(b <= a for a, b in zip(values, values[1:], strict=False))


def _lower(loss: str, other: str, metric: str) -> Callable[[Lookup], bool]:
    """Check: ``loss`` has a lower ``metric`` than ``other``."""
    return lambda v: v(loss, metric) < v(other, metric)


_TOPK, _SAMPLED = "topk_forward_kl_k8", "sampled_kd_loss_at_k8_bytes"  # zoo.sparse entries


def _closer_to_dense(v: Lookup) -> bool:
    """The sampled cache's student is nearer the dense forward-KL student than top-k's."""
    dense = v("forward_kl", "forward_kl")
    return abs(v(_SAMPLED, "forward_kl") - dense) < abs(v(_TOPK, "forward_kl") - dense)


def _beats_fkl_and_rkl(loss: str, method: str, source: str, statement: str) -> Claim:
    """The claim that ``loss`` reaches a lower held-out forward KL (the zoo's main metric,
    also the demos' divergence) than both forward_kl and reverse_kl."""
    return Claim(
        f"{method}_beats_fkl_and_rkl",
        statement,
        (source,),
        f"{loss} reaches a lower held-out KL(p||q) than forward_kl and than reverse_kl",
        tuple((lo, "forward_kl") for lo in (loss, "forward_kl", "reverse_kl")),
        lambda v: all(
            v(loss, "forward_kl") < v(other, "forward_kl") for other in ("forward_kl", "reverse_kl")
        ),
    )


_GJSD_PATH = ("forward_kl", "js_divergence", "generalized_jsd", "reverse_kl")  # beta 0, .5, .9, 1

#: What both AKL claims rest on: head and tail gaps of AKL and of the two KLs.
_AKL_EVIDENCE = tuple(
    (loss, metric)
    for loss in ("adaptive_kl", "forward_kl", "reverse_kl")
    for metric in ("head_gap", "tail_gap")
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fkl_mean_seeking",
        "Forward KL is mean-seeking: the student spreads its mass to cover the teacher's modes.",
        ("gu2023minillm",),
        "forward_kl has a higher entropy ratio and a higher mode recall than reverse_kl",
        tuple(
            (lo, m) for lo in ("forward_kl", "reverse_kl") for m in ("entropy_ratio", "mode_recall")
        ),
        lambda v: (
            v("forward_kl", "entropy_ratio") > v("reverse_kl", "entropy_ratio")
            and v("forward_kl", "mode_recall") > v("reverse_kl", "mode_recall")
        ),
    ),
    Claim(
        "fkl_void_mass",
        "Forward KL makes the student put mass where the teacher has almost none "
        "(MiniLLM's 'void regions').",
        ("gu2023minillm",),
        "forward_kl has a higher hallucination mass than reverse_kl",
        (("forward_kl", "hallucination_mass"), ("reverse_kl", "hallucination_mass")),
        lambda v: v("forward_kl", "hallucination_mass") > v("reverse_kl", "hallucination_mass"),
    ),
    Claim(
        "rkl_mode_seeking",
        "Reverse KL is mode-seeking: the student concentrates on a few of the teacher's modes.",
        ("gu2023minillm",),
        "reverse_kl has an entropy ratio below 1 and a lower mode recall than forward_kl",
        (
            ("reverse_kl", "entropy_ratio"),
            ("reverse_kl", "mode_recall"),
            ("forward_kl", "mode_recall"),
        ),
        lambda v: (
            v("reverse_kl", "entropy_ratio") < 1
            and v("reverse_kl", "mode_recall") < v("forward_kl", "mode_recall")
        ),
    ),
    *(
        Claim(
            f"skew_{short}_stable",
            f"Skewed {direction} KL is more stable than {direction} KL: its gradient stays "
            "bounded (DistiLLM).",
            ("ko2024distillm",),
            f"the largest per-step gradient norm is lower for skew_{plain} than for {plain}",
            ((f"skew_{plain}", "grad_norm_max"), (plain, "grad_norm_max")),
            _lower(f"skew_{plain}", plain, "grad_norm_max"),
        )
        for short, direction, plain in (
            ("fkl", "forward", "forward_kl"),
            ("rkl", "reverse", "reverse_kl"),
        )
    ),
    Claim(
        "akl_balances_head_and_tail",
        "Adaptive KL balances the fit of the teacher's head and tail.",
        ("wu2024rethinking",),
        "adaptive_kl's head gap and tail gap are each at most the larger of forward_kl's and "
        "reverse_kl's (it is never the worst of the three on either part)",
        _AKL_EVIDENCE,
        lambda v: all(
            v("adaptive_kl", m) <= max(v("forward_kl", m), v("reverse_kl", m))
            for m in ("head_gap", "tail_gap")
        ),
    ),
    Claim(
        "akl_beats_fkl_and_rkl",
        "Adaptive KL fits the teacher better than both forward and reverse KL.",
        ("wu2024rethinking",),
        "adaptive_kl's head gap + tail gap (twice the total variation) is lower than both "
        "forward_kl's and reverse_kl's",
        _AKL_EVIDENCE,
        lambda v: all(
            v("adaptive_kl", "head_gap") + v("adaptive_kl", "tail_gap")
            < v(other, "head_gap") + v(other, "tail_gap")
            for other in ("forward_kl", "reverse_kl")
        ),
    ),
    _beats_fkl_and_rkl(
        "taid_loss",
        "taid",
        "shing2025taid",
        "TAID (an adaptive target moving from the student to the teacher) distils a better "
        "student than forward KL and reverse KL.",
    ),
    _beats_fkl_and_rkl(
        "ab_divergence",
        "abkd",
        "wang2025abkd",
        "ABKD's alpha-beta divergence at (0.2, 0.7) distils a better student than forward KL "
        "(alpha, beta = 1, 0) and reverse KL (0, 1).",
    ),
    Claim(
        "gjsd_interpolates",
        "Generalized JSD interpolates between forward KL (beta = 0) and reverse KL (beta = 1).",
        ("agarwal2023policy",),
        "entropy ratio and hallucination mass are non-increasing along forward_kl (beta 0), "
        "js_divergence (0.5), generalized_jsd (0.9), reverse_kl (1)",
        tuple((lo, m) for lo in _GJSD_PATH for m in ("entropy_ratio", "hallucination_mass")),
        lambda v: all(
            _non_increasing([v(lo, m) for lo in _GJSD_PATH])
            for m in ("entropy_ratio", "hallucination_mass")
        ),
    ),
    Claim(
        "opd_beats_off_policy_fkl",
        "On-policy distillation (the student's own samples, rewarded with the teacher's "
        "per-token log-ratio) ends closer to the teacher in reverse KL and hallucinates less "
        "than off-policy forward KL (the on-policy distillation recipes of 2025, after GKD and "
        "MiniLLM).",
        ("agarwal2023policy", "gu2023minillm"),
        "opd_policy_gradient_loss has a lower held-out reverse KL and a lower hallucination mass "
        "than forward_kl",
        tuple(
            (lo, m)
            for lo in ("opd_policy_gradient_loss", "forward_kl")
            for m in ("reverse_kl", "hallucination_mass")
        ),
        lambda v: all(
            v("opd_policy_gradient_loss", m) < v("forward_kl", m)
            for m in ("reverse_kl", "hallucination_mass")
        ),
    ),
    Claim(
        "white_box_beats_black_box",
        "Distilling the teacher's distribution (white-box KD) beats fine-tuning on its samples "
        "(black-box, sequence-level KD) for the same budget.",
        ("kim2016sequence",),
        "forward_kl reaches a lower held-out forward KL than sft_loss on teacher samples",
        (("forward_kl", "forward_kl"), ("sft_loss", "forward_kl")),
        lambda v: v("forward_kl", "forward_kl") < v("sft_loss", "forward_kl"),
    ),
    Claim(
        "sampled_cache_beats_topk_at_equal_bytes",
        "At equal storage, a sampled (unbiased) teacher cache distils closer to dense "
        "distillation than a top-k (biased) cache (Sparse Logit Sampling).",
        ("anshumann2025sparse",),
        f"{_SAMPLED}'s held-out forward KL is nearer forward_kl's than {_TOPK}'s is (the "
        "sampled cache's N chosen so its expected bytes per token do not exceed top-8's)",
        tuple((lo, "forward_kl") for lo in ("forward_kl", _TOPK, _SAMPLED)),
        _closer_to_dense,
    ),
    Claim(
        "soft_ce_trains_like_fkl",
        "Soft cross-entropy has the gradient of forward KL, so it trains the same student "
        "(a sanity check of the implementations).",
        (),
        "every held-out metric of soft_cross_entropy equals forward_kl's within 1e-3 (relative)",
        tuple((lo, m) for lo in ("soft_cross_entropy", "forward_kl") for m in METRIC_DEFINITIONS),
        lambda v: all(
            abs(v("soft_cross_entropy", m) - v("forward_kl", m))
            <= 1e-3 * max(1.0, abs(v("forward_kl", m)))
            for m in METRIC_DEFINITIONS
        ),
    ),
)


def _lookup(results: dict[str, LossResult], run_index: int | None) -> Lookup:
    """Values of the mean over seeds (``run_index=None``) or of one run."""

    def value(loss: str, metric: str) -> float:
        entry = results[loss]
        if run_index is None:
            return float(entry["mean"][metric])
        return run_value(entry["runs"][run_index], metric)

    return value


def evaluate_claims(results: dict[str, LossResult], n_seeds: int) -> list[ClaimVerdict]:
    """Verdict of every claim of :data:`CLAIMS` (``None`` when a loss it needs was not run)."""
    verdicts: list[ClaimVerdict] = []
    for claim in CLAIMS:
        entry: ClaimVerdict = {
            "id": claim.id,
            "statement": claim.statement,
            "sources": list(claim.sources),
            "criterion": claim.criterion,
            "reproduced": None,
        }
        if not claim.losses <= results.keys():
            missing = sorted(claim.losses - results.keys())
            entry["note"] = f"not run: needs {', '.join(missing)}"
        else:
            means = _lookup(results, None)
            entry["reproduced"] = bool(claim.check(means))
            entry["seeds_agreeing"] = sum(
                bool(claim.check(_lookup(results, i))) for i in range(n_seeds)
            )
            entry["n_seeds"] = n_seeds
            entry["evidence"] = {f"{lo}.{m}": means(lo, m) for lo, m in claim.uses}
        verdicts.append(entry)
    return verdicts
