"""Demos of on-policy training: the OPD kind's builder and the two scenarios (``--loss``).

Speculative KD and privileged self-distillation are scenarios: they train any token-level loss
in a setting of their own. The self-distillation teacher is the student network itself, so the
test checks that the gradient is the one of the loss against a constant teacher.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference_impls.demos import (
    DemoConfig,
    build_student,
    build_task,
    build_teacher,
    main,
    run_demo,
)
from reference_impls.demos.on_policy_tasks import (
    interleaved_continuations,
    privileged_logits,
    self_distillation_loss,
)
from reference_impls.demos.tasks import SCENARIOS, demo_note
from reference_impls.demos.world import response_mask
from reference_impls.registry import Kind, LossSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL = DemoConfig(n_train=64, n_eval=32, batch_size=8)
CPU = torch.device("cpu")


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _undetached_forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    log_q, log_p = student_logits.log_softmax(-1), teacher_logits.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)[mask].mean()


def test_no_gradient_reaches_the_model_through_the_privileged_teacher_pass() -> None:
    torch.manual_seed(0)
    task = build_task("privileged_self_distillation", SMALL, CPU, 0, loss="forward_kl")
    model = task.module
    assert model is not None
    cfg, sep = SMALL, SMALL.vocab_size
    seqs = task.pool[0][:6]
    answer, inputs = seqs[:, 1 + cfg.prompt_len :], seqs[:, :-1]
    mask = response_mask(inputs, cfg)
    # a forward KL that does not detach its teacher (the registry's losses do): the demo's
    # teacher pass must keep gradients out by itself
    spec = LossSpec(_undetached_forward_kl, Kind.TOKEN_LEVEL)

    teacher = privileged_logits(model, answer, inputs, sep)
    assert not teacher.requires_grad and teacher.grad_fn is None
    got = _grads(self_distillation_loss(spec, model, answer, inputs, mask, sep), task.params)

    def live_teacher() -> torch.Tensor:  # the same pass, differentiable
        context = torch.cat([answer, torch.full_like(answer[:, :1], sep), inputs], dim=1)
        logits: torch.Tensor = model(context).logits
        return logits[:, answer.shape[1] + 1 :]

    want = _grads(spec.function(model(inputs).logits, live_teacher().detach(), mask), task.params)
    through = _grads(spec.function(model(inputs).logits, live_teacher(), mask), task.params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # the check can fail: differentiating through the teacher pass changes the gradient
    assert max(float((g - t).abs().max()) for g, t in zip(got, through, strict=True)) > 1e-4


def test_interleaved_sampling_uses_the_teacher_top_k() -> None:
    """top_k = V keeps every proposal (the student's own samples); top_k = 0 the teacher's."""
    torch.manual_seed(1)
    student, teacher = build_student(SMALL, CPU), build_teacher(SMALL, SMALL.vocab_size, CPU)
    prompts = torch.randint(0, SMALL.vocab_size, (64, 1 + SMALL.prompt_len))

    def draw(model_top_k: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(3)
        return interleaved_continuations(student, teacher, prompts, 5, model_top_k, gen)

    on_policy, from_teacher = draw(SMALL.vocab_size), draw(0)
    assert on_policy.shape == (64, prompts.shape[1] + 5)
    assert torch.equal(on_policy[:, : prompts.shape[1]], prompts)
    # the same generator stream: the student's draws (first of each pair) or the teacher's
    gen = torch.Generator().manual_seed(3)
    seqs = prompts
    for _ in range(5):
        q = student(seqs).logits[:, -1].softmax(-1)
        p = teacher(seqs).logits[:, -1].softmax(-1)
        from_q = torch.multinomial(q, 1, generator=gen)
        torch.multinomial(p, 1, generator=gen)
        seqs = torch.cat([seqs, from_q], dim=1)
    assert torch.equal(on_policy, seqs)
    assert not torch.equal(on_policy, from_teacher)


@pytest.mark.parametrize(
    ("name", "loss"),
    [
        ("opd_policy_gradient_loss", None),
        ("speculative_kd", "forward_kl"),
        ("speculative_kd", "reverse_kl"),
        ("privileged_self_distillation", "reverse_kl"),
    ],
)
def test_on_policy_demos_train(name: str, loss: str | None) -> None:
    result = run_demo(name, loss=loss, steps=40, device="cpu", quiet=True, log_every=20)
    assert result.divergences[-1] < 0.8 * result.divergences[0], result
    if name != "privileged_self_distillation":  # its teacher moves (see the note)
        assert result.losses[-1] < result.losses[0], result


def test_scenario_notes_and_loss_errors() -> None:
    assert set(SCENARIOS) == {"speculative_kd", "privileged_self_distillation"}
    assert "loss = reverse_kl" in demo_note("speculative_kd", "reverse_kl")
    assert "top-4" in demo_note("speculative_kd")
    with pytest.raises(ValueError, match="token-level loss"):
        build_task("speculative_kd", SMALL, CPU, 0, loss="dpo_loss")
    with pytest.raises(ValueError, match="scenario"):
        build_task("forward_kl", SMALL, CPU, 0, loss="reverse_kl")


def test_command_line_runs_a_scenario_and_rejects_misuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cmd = [sys.executable, "-m", "reference_impls.demos", "speculative_kd", "--loss"]
    cmd += ["js_divergence", "--device", "cpu", "--steps", "4", "--log-every", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loss = js_divergence" in proc.stdout and "done in" in proc.stdout
    with pytest.raises(SystemExit) as exc:
        main(["forward_kl", "--loss", "reverse_kl"])
    assert exc.value.code == 2 and "scenario" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["speculative_kd", "--loss", "dpo_loss"])
    assert exc.value.code == 2
