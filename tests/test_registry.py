"""The registry is the one list of losses: everything else is derived from it, by kind."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import Tensor

import reference_impls
from reference_impls import LOSSES, REGISTRY, SPECS, TOKEN_LEVEL_LOSSES, Kind, LossSpec, spec_of
from reference_impls.demos import BUILDERS, DemoConfig, demo_note, train_loop
from reference_impls.kl import forward_kl
from reference_impls.registry import token_level_loss


def test_registry_and_token_level_losses_are_derived_from_the_specs() -> None:
    names = [s.name for s in LOSSES]
    assert len(names) == len(set(names)) == len(SPECS)
    assert list(REGISTRY) == names
    assert all(REGISTRY[s.name] is s.function for s in LOSSES)
    assert tuple(s.name for s in LOSSES if s.kind is Kind.TOKEN_LEVEL) == TOKEN_LEVEL_LOSSES
    assert set(reference_impls.__all__) >= set(REGISTRY)
    assert set(dir(reference_impls)) >= set(REGISTRY)


@pytest.mark.parametrize("spec", LOSSES, ids=lambda s: s.name)
def test_hyperparameters_are_keyword_only(spec: LossSpec) -> None:
    """Every parameter with a default other than None, and every spec param, is keyword-only."""
    params = inspect.signature(spec.function).parameters
    positional = [
        name
        for name, p in params.items()
        if p.kind is not inspect.Parameter.KEYWORD_ONLY
        and p.default is not inspect.Parameter.empty
        and p.default is not None
    ]
    assert positional == [], f"{spec.name}: {positional} should be keyword-only"
    for key in spec.params:
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY, (spec.name, key)
    config_fields = {f.name for f in dataclasses.fields(DemoConfig)}
    assert set(spec.demo) <= config_fields, spec.name
    assert demo_note(spec.name)
    assert spec.kind in BUILDERS


@pytest.mark.parametrize("name", TOKEN_LEVEL_LOSSES)
def test_token_level_losses_follow_the_contract(name: str) -> None:
    params = inspect.signature(token_level_loss(name)).parameters
    assert list(params)[:3] == ["student_logits", "teacher_logits", "mask"]
    assert params["mask"].default is None
    assert params["temperature"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["temperature"].default == 1.0


def test_unknown_names_and_wrong_kinds_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        spec_of("nope")
    with pytest.raises(ValueError, match="must be a token-level loss"):
        token_level_loss("dpo_loss")


def half_forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    temperature: float = 1.0,
    scale: float = 0.5,
) -> Tensor:
    """A loss the registry does not know: forward KL times ``scale``."""
    return scale * forward_kl(student_logits, teacher_logits, mask, temperature=temperature)


def test_a_new_spec_trains_through_its_kind_without_any_other_edit() -> None:
    """A demo builder takes any spec of its kind: nothing in the demos names a loss."""
    spec = LossSpec(half_forward_kl, Kind.TOKEN_LEVEL, "a test loss", params={"scale": 0.25})
    cfg = DemoConfig(n_train=32, n_eval=8)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    task = BUILDERS[spec.kind].build(spec, cfg, torch.device("cpu"), gen)
    assert task.name == "half_forward_kl"
    logged: list[float] = []
    train_loop(
        task,
        steps=4,
        batch_size=8,
        lr=1e-2,
        seed=0,
        log_every=4,
        on_log=lambda s, v: logged.append(v),
    )
    assert len(logged) == 2 and logged[-1] < logged[0]
