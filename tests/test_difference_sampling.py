"""Difference sampling (MiniPLM): the score, the selection, and the scenario demo.

The worked example is the reference file's (``kd-formulas-2025.md``, MiniPLM): document A has
mean token log-probs -7/6 (teacher) and -2 (reference), B has -3 and -3.2. The official
code's difference ranks A first (0.833 > 0.2); the README's ratio log p / log p_ref ranks B
first (0.9375 > 0.583). The test pins the difference's order.
"""

from __future__ import annotations

import pytest
import torch

import reference_impls
from reference_impls.demos import main as demos_main
from reference_impls.difference_sampling import difference_scores, select_by_difference

# A: 3 tokens, B: 4 tokens (A right-padded with garbage that the mask hides)
TEACHER = torch.tensor([[-1.0, -1.5, -1.0, 99.0], [-3.0, -3.0, -3.0, -3.0]])
REFERENCE = torch.tensor([[-2.0, -2.0, -2.0, float("nan")], [-3.2, -3.2, -3.2, -3.2]])
MASK = torch.tensor([[True, True, True, False], [True, True, True, True]])


def test_worked_example_ranks_by_the_difference_not_the_ratio() -> None:
    scores = difference_scores(TEACHER, REFERENCE, MASK)
    torch.testing.assert_close(scores, torch.tensor([5 / 6, 0.2]))
    assert select_by_difference(scores, fraction=0.5).tolist() == [0]
    # the ratio form would keep B: its order is the opposite one
    mean_t = torch.tensor([-7 / 6, -3.0])
    mean_r = torch.tensor([-2.0, -3.2])
    ratio = mean_t / mean_r
    torch.testing.assert_close(ratio, torch.tensor([0.583333, 0.9375]))
    assert select_by_difference(ratio, fraction=0.5).tolist() == [1]


def test_selection_keeps_the_top_fraction_best_first_with_stable_ties() -> None:
    scores = torch.tensor([0.1, 0.9, -0.3, 0.9, 0.5, 0.0])
    assert select_by_difference(scores, 0.5).tolist() == [1, 3, 4]
    assert select_by_difference(scores, 1.0).tolist() == [1, 3, 4, 0, 5, 2]
    assert select_by_difference(scores, 0.01).tolist() == [1]  # at least one


def test_scores_are_float64_when_given_float64_and_carry_no_gradient() -> None:
    t = TEACHER.double().requires_grad_()
    scores = difference_scores(t, REFERENCE.double(), MASK)
    assert scores.dtype == torch.float64 and not scores.requires_grad


def test_bad_inputs_are_rejected_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="share one shape"):
        difference_scores(TEACHER, REFERENCE[:, :3], MASK)
    with pytest.raises(TypeError, match="bool"):
        difference_scores(TEACHER, REFERENCE, MASK.float())
    with pytest.raises(ValueError, match=r"documents \[1\] have no real token"):
        difference_scores(TEACHER, REFERENCE, torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ValueError, match="finite"):
        difference_scores(TEACHER, REFERENCE, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="fraction"):
        select_by_difference(torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        select_by_difference(torch.ones(2, 2))


def test_the_utilities_are_exported_but_not_registered_as_losses() -> None:
    assert reference_impls.difference_scores is difference_scores
    assert "difference_scores" not in reference_impls.REGISTRY


def test_scenario_demo_runs_and_prefers_teacher_documents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demos_main(["difference_sampling", "--steps", "60", "--per-source", "96"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    teacher_selected, teacher_random = int(rows["teacher"][1]), int(rows["teacher"][2])
    assert teacher_selected > teacher_random  # the selection favours the teacher's documents
    assert "difference-selected" in out and "random subset" in out
