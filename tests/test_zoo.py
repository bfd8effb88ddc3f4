"""Tests of the loss zoo: metrics against hand computations, the language, determinism, a mini zoo.

The metric references are written out with ``math`` on two-context, three-token examples; the
language's properties (modes, ruled-out tokens, split) are checked against the definitions of
``reference_impls.zoo``'s docstring; a 2-loss x 1-seed x few-step zoo runs end to end as in CI.
"""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch

from kbtool.site.plots import ZOO_CHARTS
from reference_impls import TOKEN_LEVEL_LOSSES
from reference_impls.jobs import Progress
from reference_impls.zoo import (
    DEFAULT_LOSSES,
    ZooConfig,
    ZooStudent,
    build_language,
    build_zoo_task,
    evaluate_claims,
    main,
    run_zoo,
)
from reference_impls.zoo.language import Language
from reference_impls.zoo.metrics import (
    distribution_metrics,
    entropy_ratio,
    forward_kl_mean,
    hallucination_mass,
    head_tail_gaps,
    mode_recall,
    reverse_kl_mean,
    top1_agreement,
)
from reference_impls.zoo.results import COLUMNS, METRIC_DEFINITIONS

CPU = torch.device("cpu")
SMALL = ZooConfig(steps=20, n_pool=512, n_curve_points=2)

#: The site's drawings of a report by role (the zoo writes only zoo.json).
PLOT_FILES = {name.removeprefix("zoo_").removesuffix(".svg"): name for name, _, _ in ZOO_CHARTS}


def _draw(report: Any, out: Path) -> None:
    """Draw the site's zoo charts of ``report`` into ``out``."""
    for name, _, draw in ZOO_CHARTS:
        (out / name).write_text(draw(report), encoding="utf-8")


@pytest.fixture(scope="module")
def language() -> Language:
    return build_language(ZooConfig(), CPU)


# ------------------------------------------------------------------------------- metrics

# Two contexts over three tokens; context 0 has one mode (token 0), context 1 two (0 and 1).
P = [[0.7, 0.2995, 0.0005], [0.45, 0.45, 0.1]]
Q = [[0.5, 0.25, 0.25], [0.8, 0.04, 0.16]]
MODES = [[True, False, False], [True, True, False]]


def _log(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log()


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def _h(a: list[float]) -> float:
    return -sum(x * math.log(x) for x in a if x > 0)


def test_divergences_and_entropy_ratio_match_hand_computation() -> None:
    log_p, log_q = _log(P), _log(Q)
    fkl = (_kl(P[0], Q[0]) + _kl(P[1], Q[1])) / 2
    rkl = (_kl(Q[0], P[0]) + _kl(Q[1], P[1])) / 2
    ratio = (_h(Q[0]) + _h(Q[1])) / (_h(P[0]) + _h(P[1]))  # ratio of the means
    assert forward_kl_mean(log_p, log_q) == pytest.approx(fkl, rel=1e-12)
    assert reverse_kl_mean(log_p, log_q) == pytest.approx(rkl, rel=1e-12)
    assert entropy_ratio(log_p, log_q) == pytest.approx(ratio, rel=1e-12)
    # hand values of the first context, so that the formulas above are themselves checked
    assert _kl(P[0], Q[0]) == pytest.approx(
        0.7 * math.log(1.4) + 0.2995 * math.log(0.2995 / 0.25) + 0.0005 * math.log(0.002)
    )


def test_hallucination_top1_recall_and_gaps_match_hand_computation() -> None:
    log_p, log_q, modes = _log(P), _log(Q), torch.tensor(MODES)
    # only token 2 of context 0 has p < 1e-3: the student gives it 0.25, context 1 nothing
    assert hallucination_mass(log_p, log_q) == pytest.approx(0.25 / 2)
    # argmax agrees in both contexts (token 0; in context 1 p ties, argmax takes the first)
    assert top1_agreement(log_p, log_q) == 1.0
    # modes: (0: q 0.5) recalled; (1, 0: q 0.8) recalled; (1, 1: q 0.04 < 0.05) missed
    assert mode_recall(log_q, modes) == pytest.approx(2 / 3)
    head, tail = head_tail_gaps(log_p, log_q, modes)
    assert head == pytest.approx((0.2 + (0.35 + 0.41)) / 2)
    assert tail == pytest.approx(((0.0495 + 0.2495) + 0.06) / 2)
    # the gaps split twice the total variation
    tv = sum(abs(a - b) for rp, rq in zip(P, Q, strict=True) for a, b in zip(rp, rq, strict=True))
    assert head + tail == pytest.approx(tv / 2)


def test_distribution_metrics_bundles_every_metric_and_is_zero_for_a_perfect_student() -> None:
    log_p, modes = _log(P), torch.tensor(MODES)
    same = distribution_metrics(log_p, log_p.clone(), modes)
    assert set(same) == set(METRIC_DEFINITIONS)
    assert same["forward_kl"] == same["reverse_kl"] == 0.0
    assert same["entropy_ratio"] == pytest.approx(1.0)
    assert same["top1_agreement"] == same["mode_recall"] == 1.0
    assert same["head_gap"] == same["tail_gap"] == 0.0
    assert same["hallucination_mass"] == pytest.approx(0.0005 / 2)
    with pytest.raises(ValueError, match="shape"):
        distribution_metrics(log_p, log_p[:, :2], modes)
    with pytest.raises(ValueError, match="modes"):
        mode_recall(log_p, modes.float())


# ------------------------------------------------------------------------------ language


def test_language_is_a_normalised_multimodal_mixture(language: Language) -> None:
    cfg = ZooConfig()
    p = language.log_probs.double().exp()
    assert p.shape == (cfg.vocab_size**2, cfg.vocab_size)
    assert torch.allclose(p.sum(-1), torch.ones(len(p), dtype=torch.float64), atol=1e-5)
    n_modes = language.modes.sum(-1)
    assert int(n_modes.min()) >= 1 and int(n_modes.max()) <= 4
    assert {2, 3, 4} <= set(n_modes.tolist())  # all three sizes occur
    # one mode only where both components peak on one token: rare
    assert float((n_modes == 1).float().mean()) < 0.02
    # modes are exactly the tokens with p >= 0.1; every other token stays below 0.06
    assert torch.equal(language.modes, p >= 0.1)
    assert float(p[~language.modes].max()) < 0.06
    # ruled-out tokens (p < 1e-3) are the floor alone, and there are many per context
    ruled_out = p < 1e-3
    assert torch.allclose(p[ruled_out], torch.tensor(cfg.floor_mass / cfg.vocab_size).double())
    assert float(ruled_out.sum(-1).float().mean()) > 20


def test_language_split_and_context_indexing(language: Language) -> None:
    train, held = set(language.train_ids.tolist()), set(language.held_out_ids.tolist())
    assert not train & held
    assert train | held == set(range(64 * 64))
    assert len(held) == 1024
    ctx = language.contexts(torch.tensor([0, 65, 4095]))
    assert ctx.tolist() == [[0, 0], [1, 1], [63, 63]]
    assert language.index(ctx).tolist() == [0, 65, 4095]
    a, b = 5, 9
    assert torch.equal(
        language.teacher_logprobs(torch.tensor([a, b])), language.log_probs[a * 64 + b]
    )


def test_language_is_fixed_by_its_seed() -> None:
    one, two = build_language(SMALL, CPU), build_language(SMALL, CPU)
    assert torch.equal(one.log_probs, two.log_probs)
    other = build_language(ZooConfig(language_seed=7), CPU)
    assert not torch.equal(one.log_probs, other.log_probs)


def test_student_head_is_low_rank_and_teacher_is_not(language: Language) -> None:
    """The student's logits over all contexts have rank <= rank + 1; the teacher's far more."""
    cfg = ZooConfig()
    student = ZooStudent(cfg.vocab_size, cfg.d_embed, cfg.d_hidden, cfg.rank).double()
    all_contexts = language.contexts(torch.arange(cfg.vocab_size**2))
    with torch.no_grad():
        logits = student(all_contexts)
    assert int(torch.linalg.matrix_rank(logits)) <= cfg.rank + 1
    assert int(torch.linalg.matrix_rank(language.log_probs.double())) > 4 * cfg.rank


def test_every_loss_starts_from_the_same_student_and_pool(language: Language) -> None:
    a = build_zoo_task("forward_kl", SMALL, language, CPU, seed=3)
    b = build_zoo_task("sft_loss", SMALL, language, CPU, seed=3)
    c = build_zoo_task("forward_kl", SMALL, language, CPU, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.params, b.params, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(a.pool, b.pool, strict=True))
    assert not torch.equal(a.params[0], c.params[0])
    # the pool's contexts are training contexts and its tokens samples of the teacher
    train = set(language.train_ids.tolist())
    assert set(language.index(a.pool[0]).tolist()) <= train
    with pytest.raises(ValueError, match="zoo trains"):
        build_zoo_task("dpo_loss", SMALL, language, CPU, seed=0)


def test_default_losses_are_the_token_level_losses_opd_and_sft() -> None:
    assert (*TOKEN_LEVEL_LOSSES, "opd_policy_gradient_loss", "sft_loss") == DEFAULT_LOSSES


# ------------------------------------------------------------------------------- the zoo


def _without_timing(value: Any) -> Any:
    """The report with wall-clock quantities dropped (they differ from run to run)."""
    if isinstance(value, dict):
        return {
            k: _without_timing(v)
            for k, v in value.items()
            if k not in ("ms_per_step", "wall_seconds")
        }
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def test_same_seed_same_numbers() -> None:
    losses = ("forward_kl", "sft_loss")
    a = run_zoo(losses, (0,), config=SMALL, device="cpu", progress=False)
    b = run_zoo(losses, (0,), config=SMALL, device="cpu", progress=False)
    c = run_zoo(losses, (1,), config=SMALL, device="cpu", progress=False)
    assert _without_timing(a) == _without_timing(b)
    fkl = a["results"]["forward_kl"]["runs"][0]
    assert fkl["metrics"] != c["results"]["forward_kl"]["runs"][0]["metrics"]
    # training moved the student towards the teacher
    assert fkl["curve"]["forward_kl"][-1] < fkl["curve"]["forward_kl"][0]
    assert fkl["curve"]["step"] == [0, 10, 20]


def test_mini_zoo_writes_json_and_svgs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CI zoo: 2 losses x 1 seed x 30 steps through the command line."""
    argv = ["--losses", "forward_kl", "reverse_kl", "--seeds", "1", "--steps", "30"]
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "2/2" in err and "reverse_kl seed 0" in err  # the progress bar
    assert "wrote" in out and "fkl_void_mass" in out
    report = json.loads((tmp_path / "zoo.json").read_text(encoding="utf-8"))
    assert report["schema"] == "kd-atlas/zoo/1"
    assert report["losses"] == ["forward_kl", "reverse_kl"] and report["seeds"] == [0]
    assert report["config"]["steps"] == 30 and report["world_size"] == 1
    for loss in report["losses"]:
        entry = report["results"][loss]
        assert set(entry["mean"]) >= set(METRIC_DEFINITIONS) | {"ms_per_step", "grad_norm_max"}
        assert all(v == 0.0 for v in entry["std"].values())  # one seed: no spread
        assert entry["runs"][0]["ms_per_step"] > 0
        assert all(math.isfinite(v) for v in entry["mean"].values())
    claims = {c["id"]: c for c in report["claims"]}
    assert claims["fkl_void_mass"]["reproduced"] in (True, False)
    assert claims["fkl_void_mass"]["n_seeds"] == 1
    assert claims["gjsd_interpolates"]["reproduced"] is None  # js/gjsd were not run
    assert "js_divergence" in claims["gjsd_interpolates"]["note"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo.json"]  # the zoo draws nothing
    _draw(report, tmp_path)  # the site draws the charts from zoo.json
    for name in PLOT_FILES.values():
        root = ET.parse(tmp_path / name).getroot()  # well-formed XML
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find("{http://www.w3.org/2000/svg}title") is not None
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "forward_kl" in text and "reverse_kl" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_arguments_are_rejected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--losses", "dpo_loss"])
    with pytest.raises(SystemExit):
        main(["--seeds", "0"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--device", "cuda"]) == 2
    assert "use --device cpu" in capsys.readouterr().err
    with pytest.raises(ValueError, match="subset"):
        run_zoo(("forward_kl", "mmd"), (0,), config=SMALL, device="cpu", progress=False)


# ----------------------------------------------------------------------- claims and plots


def _fake_results(values: dict[str, dict[str, float]], n_seeds: int = 2) -> dict[str, Any]:
    """Results in the report's shape with the same metrics for every seed."""
    out: dict[str, Any] = {}
    for loss, metrics in values.items():
        full = {k: metrics.get(k, 0.5) for k in [*METRIC_DEFINITIONS, "grad_norm_max"]}
        run = {
            "metrics": {k: full[k] for k in METRIC_DEFINITIONS},
            "grad_norm_max": full["grad_norm_max"],
            "ms_per_step": 1.0,
        }
        out[loss] = {
            "mean": {**full, "ms_per_step": 1.0},
            "std": dict.fromkeys([*full, "ms_per_step"], 0.0),
            "runs": [run] * n_seeds,
        }
    return out


def test_claim_verdicts_follow_their_criteria() -> None:
    results = _fake_results(
        {
            "forward_kl": {"entropy_ratio": 1.4, "mode_recall": 0.8, "hallucination_mass": 0.2,
                           "grad_norm_max": 1.0},
            "reverse_kl": {"entropy_ratio": 0.3, "mode_recall": 0.5, "hallucination_mass": 0.02,
                           "grad_norm_max": 4.0},
            "skew_forward_kl": {"grad_norm_max": 1.5},
            "skew_reverse_kl": {"grad_norm_max": 0.7},
        }
    )  # fmt: skip
    verdicts = {c["id"]: c for c in evaluate_claims(results, 2)}
    assert verdicts["fkl_mean_seeking"]["reproduced"] is True
    assert verdicts["fkl_void_mass"]["reproduced"] is True
    assert verdicts["rkl_mode_seeking"]["reproduced"] is True
    assert verdicts["skew_fkl_stable"]["reproduced"] is False  # 1.5 is not below 1.0
    assert verdicts["skew_rkl_stable"]["reproduced"] is True
    assert verdicts["skew_rkl_stable"]["seeds_agreeing"] == 2
    assert verdicts["skew_rkl_stable"]["evidence"] == {
        "skew_reverse_kl.grad_norm_max": 0.7,
        "reverse_kl.grad_norm_max": 4.0,
    }
    assert verdicts["white_box_beats_black_box"]["reproduced"] is None
    # interpolation: a non-monotone path is not reproduced
    path = {"forward_kl": 1.4, "js_divergence": 0.5, "generalized_jsd": 0.9, "reverse_kl": 0.3}
    results = _fake_results(
        {lo: {"entropy_ratio": v, "hallucination_mass": v} for lo, v in path.items()}
    )
    verdicts = {c["id"]: c for c in evaluate_claims(results, 2)}
    assert verdicts["gjsd_interpolates"]["reproduced"] is False


def test_table_svg_bolds_the_best_mean(tmp_path: Path) -> None:
    results = _fake_results(
        {"forward_kl": {"forward_kl": 0.25}, "reverse_kl": {"forward_kl": 3.5}}, n_seeds=1
    )
    report = {
        "losses": ["forward_kl", "reverse_kl"],
        "seeds": [0],
        "results": results,
        "config": {"steps": 5, "batch_size": 8},
        "language": {"teacher_entropy": 1.5},
        "columns": list(COLUMNS),
    }
    _draw(report, tmp_path)
    table = (tmp_path / PLOT_FILES["table"]).read_text(encoding="utf-8")
    assert 'font-weight="bold"' in table.split("0.250")[0].rsplit("<text", 1)[1]
    assert 'font-weight="normal"' in table.split("3.500")[0].rsplit("<text", 1)[1]
    scatter = (tmp_path / PLOT_FILES["fkl_rkl"]).read_text(encoding="utf-8")
    assert scatter.count('r="3.5"') == 2  # one dot per run


def test_progress_writes_a_line_per_run_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = Progress(3, stream=stream)
    for i in range(3):
        bar.advance(f"run {i}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[") and "1/3 run 0" in lines[0]
    assert "3/3 run 2" in lines[2] and "#" * 24 in lines[2]
    silent = io.StringIO()
    Progress(2, stream=silent, enabled=False).advance("x")
    assert silent.getvalue() == ""
