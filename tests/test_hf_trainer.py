"""DistillationTrainer on real transformers model classes (tiny, built from configs, no download).

The expected values are computed here from the models' own logits and the registry functions,
with the causal shift written out (logits ``[:, :-1]`` predict ``input_ids[:, 1:]``); the
trainer must reproduce them, train, and feed the student's own samples on on-policy batches.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

import reference_impls  # noqa: E402
from reference_impls.integrations import tiny  # noqa: E402
from reference_impls.integrations.batches import (  # noqa: E402
    DistillationCollator,
    completion_batch,
    split_prompts,
)
from reference_impls.integrations.transformers import DistillationTrainer  # noqa: E402
from reference_impls.teacher_cache import TeacherCache, write_teacher_cache  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def test_importing_reference_impls_does_not_import_transformers() -> None:
    code = (
        "import sys, reference_impls, reference_impls.integrations; "
        "print(sorted(m for m in ('transformers', 'trl', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    """6 rows with prompts of 4 tokens; two rows shortened so that padding is exercised."""
    data = tiny.tiny_dataset(6, seed=5)
    data[1]["input_ids"] = data[1]["input_ids"][:9]
    data[4]["input_ids"] = data[4]["input_ids"][:6]
    return DistillationCollator(pad_token_id=0)(data)


def _trainer(student: Any, teacher: Any, tmp_path: Path, **kw: Any) -> DistillationTrainer:
    return DistillationTrainer(
        student,
        teacher,
        tiny.training_args(tmp_path, steps=1, batch_size=4),
        train_dataset=tiny.tiny_dataset(8, seed=0),
        **kw,
    )


def _expected(
    student: Any,
    teacher: Any,
    batch: dict[str, torch.Tensor],
    loss: str,
    alpha: float,
    temperature: float,
    params: dict[str, Any],
) -> torch.Tensor:
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    s = student(**inputs).logits[:, :-1]
    with torch.no_grad():
        t = teacher(**inputs).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    counted = batch["labels"][:, 1:] != -100
    assert counted.sum() < counted.numel()  # prompts and padding are excluded
    kd = reference_impls.REGISTRY[loss](s, t, counted, temperature=temperature, **params)
    nll = -torch.log_softmax(s, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ce = nll[counted].mean()
    return alpha * ce + (1 - alpha) * kd


@pytest.mark.parametrize(
    ("loss", "params", "alpha", "temperature"),
    [
        ("forward_kl", {}, 0.0, 1.0),
        ("reverse_kl", {}, 0.3, 2.0),
        ("generalized_jsd", {"beta": 0.3}, 0.5, 1.5),
        ("total_variation", {}, 0.0, 1.0),
        ("skew_forward_kl", {"alpha": 0.1}, 0.2, 1.0),
        ("adaptive_kl", {}, 0.0, 1.0),
    ],
)
def test_loss_is_our_function_on_the_models_logits(
    tmp_path: Path,
    batch: dict[str, torch.Tensor],
    loss: str,
    params: dict[str, Any],
    alpha: float,
    temperature: float,
) -> None:
    student, teacher = tiny.tiny_causal_lm("llama"), tiny.tiny_teacher("llama")
    trainer = _trainer(
        student,
        teacher,
        tmp_path,
        loss=loss,
        loss_params=params,
        alpha=alpha,
        temperature=temperature,
    )
    got = trainer.compute_loss(trainer.model, batch)
    assert isinstance(got, torch.Tensor)
    want = _expected(student, teacher, batch, loss, alpha, temperature, params)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_fused_equals_unfused_in_value_and_gradients(
    tmp_path: Path, batch: dict[str, torch.Tensor], family: tiny.Family
) -> None:
    teacher = tiny.tiny_teacher(family)
    grads, values = [], []
    for fused in (False, True):
        student = tiny.tiny_causal_lm(family)
        trainer = _trainer(
            student,
            teacher,
            tmp_path,
            loss="generalized_jsd",
            loss_params={"beta": 0.7},
            alpha=0.25,
            temperature=1.5,
            fused=fused,
            chunk_size=8,
        )
        loss = trainer.compute_loss(trainer.model, batch)
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        values.append(loss.detach())
        grads.append({n: p.grad for n, p in student.named_parameters()})
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert g is not None and grads[1][name] is not None, name
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert grads[0]["lm_head.weight"].abs().sum() > 0


def _cache_of_batch(
    teacher: Any, batch: dict[str, torch.Tensor], path: Path, **mode: Any
) -> tuple[list[list[int]], Path]:
    """The batch's unpadded rows and a teacher cache of them (top-k or sampled, per ``mode``)."""
    rows = [
        ids[m.bool()].tolist()
        for ids, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]
    written = write_teacher_cache(
        path, lambda x: teacher(input_ids=x).logits, rows, progress=False, **mode
    )
    return rows, Path(written)


def _cache_trainer(student: Any, cache: TeacherCache, tmp_path: Path, loss: str) -> Any:
    """A trainer on a teacher cache, no teacher model, alpha 0, temperature 1."""
    return DistillationTrainer(
        student,
        None,
        tiny.training_args(tmp_path, 1, 4),
        teacher_cache=cache,
        loss=loss,
        alpha=0.0,
        temperature=1.0,
    )


def test_topk_cache_loss_is_our_function_on_the_cached_rows(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    teacher, student = tiny.tiny_teacher("llama"), tiny.tiny_causal_lm("llama")
    rows, path = _cache_of_batch(teacher, batch, tmp_path / "t.safetensors", k=8)
    with TeacherCache.open(path) as cache:
        trainer = _cache_trainer(student, cache, tmp_path, "forward_kl")
        assert trainer.kd_objective.loss == "topk_forward_kl"
        inputs = {**batch, "cache_index": torch.arange(len(rows))}
        got = trainer.compute_loss(trainer.model, inputs)
        ids, lps, cmask = cache.get_batch(list(range(len(rows))))
    length = batch["input_ids"].shape[1] - 1
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    counted = (batch["labels"][:, 1:] != -100) & cmask[:, :length]
    want = reference_impls.REGISTRY["topk_forward_kl"](
        s[:, :-1], ids[:, :length], lps[:, :length], counted
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_sft_and_policy_gradient_losses(tmp_path: Path, batch: dict[str, torch.Tensor]) -> None:
    teacher, student = tiny.tiny_teacher("llama"), tiny.tiny_causal_lm("llama")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    s = student(**inputs).logits[:, :-1]
    t = teacher(**inputs).logits[:, :-1].detach()
    targets, counted = batch["input_ids"][:, 1:], batch["labels"][:, 1:] != -100

    sft = _trainer(student, None, tmp_path, loss="sft_loss")
    got = sft.compute_loss(sft.model, batch)
    torch.testing.assert_close(got, reference_impls.REGISTRY["sft_loss"](s, batch["labels"][:, 1:]))

    pg = _trainer(
        student, teacher, tmp_path, loss="kl_regularized_pg_loss", loss_params={"kl_coef": 0.5}
    )
    logq = torch.log_softmax(s, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp = torch.log_softmax(t, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    want = reference_impls.REGISTRY["kl_regularized_pg_loss"](
        logq, logp, torch.zeros(len(targets)), counted, kl_coef=0.5
    )
    torch.testing.assert_close(pg.compute_loss(pg.model, batch), want, rtol=1e-5, atol=1e-5)


def test_sampled_cache_loss_is_our_function_on_the_cached_rows(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    teacher, student = tiny.tiny_teacher("llama"), tiny.tiny_causal_lm("llama")
    rows, path = _cache_of_batch(
        teacher, batch, tmp_path / "s.safetensors", mode="sampled", samples=32
    )
    with TeacherCache.open(path) as cache:
        trainer = _cache_trainer(student, cache, tmp_path, "sampled_kd_loss")
        got = trainer.compute_loss(trainer.model, {**batch, "cache_index": torch.arange(len(rows))})
        ids, weights, cmask = cache.get_batch(list(range(len(rows))))
    length = batch["input_ids"].shape[1] - 1
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    counted = (batch["labels"][:, 1:] != -100) & cmask[:, :length]
    # independent formula: cross-entropy against the cached importance weights
    logq = torch.log_softmax(s[:, :-1], -1).gather(-1, ids[:, :length])
    per_token = -(weights[:, :length] * logq).sum(-1)
    torch.testing.assert_close(got, per_token[counted].mean(), rtol=1e-5, atol=1e-6)


def test_cache_of_the_wrong_mode_is_refused_in_our_words(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    teacher = tiny.tiny_teacher("llama")
    path = write_teacher_cache(
        tmp_path / "t.safetensors",
        lambda x: teacher(input_ids=x).logits,
        [batch["input_ids"][0].tolist()],
        k=4,
        progress=False,
    )
    with TeacherCache.open(path) as cache, pytest.raises(ValueError, match="written with mode="):
        _trainer(tiny.tiny_causal_lm(), None, tmp_path, teacher_cache=cache, loss="sampled_kd_loss")


def test_opd_loss_gets_the_teachers_logprobs_of_the_completion(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    teacher, student = tiny.tiny_teacher("llama"), tiny.tiny_causal_lm("llama")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    s = student(**inputs).logits[:, :-1]
    logp_all = torch.log_softmax(teacher(**inputs).logits[:, :-1].detach(), -1)
    targets, counted = batch["input_ids"][:, 1:], batch["labels"][:, 1:] != -100
    opd = _trainer(
        student, teacher, tmp_path, loss="opd_policy_gradient_loss", loss_params={"coef": 0.5}
    )
    got = opd.compute_loss(opd.model, batch)
    # independent: reward -(log q - log p) per token, discount 0, ratio 1 at q_old = q
    logq = torch.log_softmax(s, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    advantage = 0.5 * -(logq - logp).detach()
    ratio = torch.exp(logq - logq.detach())
    want = -(ratio * advantage)[counted].mean()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_taid_follows_its_schedule_in_the_trainer(tmp_path: Path) -> None:
    """t starts at the registry's 0.4 and moves after every step with that step's KD term."""
    steps = 4
    trainer = DistillationTrainer(
        tiny.tiny_causal_lm(),
        tiny.tiny_teacher(),
        tiny.training_args(tmp_path, steps=steps, batch_size=4),
        train_dataset=tiny.tiny_dataset(16, seed=0),
        loss="taid_loss",
        loss_params={"t": 0.4},
    )
    trainer.train()
    kd = [h["kd"] for h in trainer.state.log_history if "kd" in h]
    assert len(kd) == steps
    # independent replay of the official update on the logged losses
    t, previous, smoothed = 0.4, None, 0.0
    for n, loss in enumerate(kd):
        if previous is not None:
            smoothed = 0.99 * smoothed + 0.01 * (previous - loss) / (previous + 1e-15)
            step = 5e-4 / (1 + math.exp(-smoothed)) * (1 - t)
            t = min(1.0, max(0.4 + 0.6 * n / steps, t + step))
        previous = loss
    assert t > 0.4
    assert trainer.kd_objective.params["t"] == pytest.approx(t, rel=1e-4)

    fixed = DistillationTrainer(
        tiny.tiny_causal_lm(),
        tiny.tiny_teacher(),
        tiny.training_args(tmp_path, steps=2, batch_size=4),
        train_dataset=tiny.tiny_dataset(8, seed=0),
        loss="taid_loss",
        loss_params={"t": 0.7},
        follow_schedule=False,
    )
    fixed.train()
    assert fixed.kd_objective.params == {"t": 0.7}


@pytest.mark.parametrize(
    ("loss", "kw"),
    [
        ("forward_kl", {}),
        ("generalized_jsd", {"family": "qwen2", "fused": True, "loss_params": {"beta": 0.5}}),
        ("reverse_kl", {"on_policy_ratio": 0.5}),
        ("topk_forward_kl", {}),
        ("sampled_kd_loss", {}),
        ("sft_loss", {}),
    ],
)
def test_training_lowers_heldout_kl(loss: str, kw: dict[str, Any]) -> None:
    result = tiny.run_tiny_hf_demo(loss, steps=20, **kw)
    assert result["kl_after"] < 0.9 * result["kl_before"], result
    logged = [h for h in result["history"] if "ce" in h]
    assert len(logged) == 20
    if loss != "sft_loss":  # KD and CE are logged apart; the loss is the KD term (alpha = 0)
        assert all(h["loss"] == pytest.approx(h["kd"], rel=1e-4) for h in logged)


def test_on_policy_batches_feed_the_students_samples(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    student, teacher = tiny.tiny_causal_lm("llama"), tiny.tiny_teacher("llama")
    trainer = _trainer(
        student, teacher, tmp_path, loss="reverse_kl", on_policy_ratio=1.0, max_new_tokens=6
    )
    seen: list[dict[str, torch.Tensor]] = []
    original = trainer.distillation_terms

    def spy(model: Any, inputs: Any) -> Any:
        seen.append(dict(inputs))
        return original(model, inputs)

    trainer.distillation_terms = spy  # type: ignore[method-assign]
    torch.manual_seed(123)
    loss = trainer.compute_loss(trainer.model, batch)
    (fed,) = seen

    # the student's own samples after each prompt, drawn again with the same seed
    prompts, prompt_mask = split_prompts(
        batch["input_ids"], batch["attention_mask"], batch["labels"], pad_id=0
    )
    torch.manual_seed(123)
    with torch.no_grad():
        sampled = student.generate(
            input_ids=prompts,
            attention_mask=prompt_mask,
            do_sample=True,
            max_new_tokens=6,
            pad_token_id=0,
        )
    rebuilt = completion_batch(prompts, prompt_mask, sampled[:, prompts.shape[1] :], [2], 0)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(fed[key], rebuilt[key]), key
    # prompts kept, completions replaced, labels only on the completion
    assert torch.equal(fed["input_ids"][:, :4], batch["input_ids"][:, :4])
    assert (fed["labels"][:, :4] == -100).all()
    assert not torch.equal(fed["input_ids"][:, 4:10], batch["input_ids"][:, 4:10])
    want = _expected(student, teacher, fed, "reverse_kl", 0.0, 1.0, {})
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)

    off = _trainer(student, teacher, tmp_path, loss="reverse_kl", on_policy_ratio=0.0)
    torch.testing.assert_close(
        off.compute_loss(off.model, batch),
        _expected(student, teacher, batch, "reverse_kl", 0.0, 1.0, {}),
    )


def test_completion_batch_stops_after_eos() -> None:
    prompts = torch.tensor([[0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    comps = torch.tensor([[11, 2, 0, 0], [12, 13, 14, 15]])
    out = completion_batch(prompts, mask, comps, [2], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 11, 2, 0, 0, 0], [7, 8, 9, 12, 13, 14, 15]]
    assert out["labels"].tolist() == [
        [-100, -100, 11, 2, -100, -100, -100],
        [-100, -100, -100, 12, 13, 14, 15],
    ]
    assert out["attention_mask"].sum(1).tolist() == [4, 7]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"loss": "dpo_loss"}, "needs inputs the DistillationTrainer does not build"),
        ({"loss": "no_such_loss"}, "unknown loss"),
        ({"loss": "forward_kl", "alpha": 1.5}, "alpha"),
        ({"loss": "forward_kl", "on_policy_ratio": -0.1}, "on_policy_ratio"),
        ({"loss": "sft_loss", "fused": True}, "fused=True works with the token-level losses"),
    ],
)
def test_bad_settings_are_rejected_in_our_words(
    tmp_path: Path, kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _trainer(tiny.tiny_causal_lm(), tiny.tiny_teacher(), tmp_path, **kw)


def test_token_loss_without_teacher_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs teacher_model"):
        _trainer(tiny.tiny_causal_lm(), None, tmp_path, loss="forward_kl")


def test_student_and_teacher_are_left_as_they_were(tmp_path: Path) -> None:
    teacher = tiny.tiny_teacher()
    before = copy.deepcopy(teacher.state_dict())
    _trainer(tiny.tiny_causal_lm(), teacher, tmp_path, loss="forward_kl").train()
    assert not any(p.requires_grad for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_evaluate_reports_the_distillation_loss_and_its_terms(tmp_path: Path) -> None:
    student, teacher = tiny.tiny_causal_lm("qwen2"), tiny.tiny_teacher("qwen2")
    trainer = _trainer(student, teacher, tmp_path, loss="forward_kl", alpha=0.5)
    heldout = tiny.tiny_dataset(8, seed=3)
    metrics = trainer.evaluate(heldout)
    batch = DistillationCollator(pad_token_id=0)(heldout)
    with torch.no_grad():
        want = _expected(student, teacher, batch, "forward_kl", 0.5, 1.0, {})
    assert metrics["eval_loss"] == pytest.approx(want.item(), rel=1e-5)
    assert metrics["eval_loss"] == pytest.approx(
        0.5 * metrics["eval_ce"] + 0.5 * metrics["eval_kd"], rel=1e-5
    )
    assert not any(k.startswith("eval_") for k in trainer._logged)


def test_gradient_accumulation_follows_the_token_mean_of_the_whole_batch(tmp_path: Path) -> None:
    """8 ragged rows in one batch == 2 accumulated micro-batches of 4 with unequal counts."""
    whole, split = tmp_path / "whole.pt", tmp_path / "split.pt"
    tiny.run_tiny_hf_demo("forward_kl", 3, batch_size=8, ragged=True, save=whole)
    tiny.run_tiny_hf_demo(
        "forward_kl", 3, batch_size=4, gradient_accumulation_steps=2, ragged=True, save=split
    )
    a, b = torch.load(whole), torch.load(split)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)
    lengths = {len(r["input_ids"]) for r in tiny.tiny_dataset(256, seed=0, ragged=True)}
    assert len(lengths) > 1  # the micro-batches really count different numbers of tokens


def test_module_entry_point_runs_a_loss_and_refuses_one_it_cannot_feed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reference_impls.integrations.__main__ import main

    assert main(["forward_kl", "--steps", "2", "--batch-size", "4", "--param", "beta=1"]) == 2
    assert "forward_kl takes no parameter 'beta'" in capsys.readouterr().err
    assert main(["dpo_loss", "--steps", "1"]) == 2
    assert "needs inputs the DistillationTrainer does not build" in capsys.readouterr().err
    assert main(["reverse_kl", "--steps", "2", "--batch-size", "4", "--alpha", "0.2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("reverse_kl on tiny llama (1 process(es), 2 steps)"), out
