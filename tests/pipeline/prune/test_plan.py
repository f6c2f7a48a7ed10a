"""Plans: JSON round trip, determinism, refusal of malformed plans, and planning never touching the model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from architectures import ARCHITECTURES, built, output_tolerance
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune import (
    PruneConfig,
    PruningPlan,
    apply_plan,
    example_input,
    plan_pruning,
    zero_removed,
)


def test_plan_survives_json_and_is_deterministic() -> None:
    arch = ARCHITECTURES["text_transformer"]
    cfg = PruneConfig(ratio=0.5, round_to=8)
    plan = plan_pruning(built("text_transformer"), arch.example(), cfg)
    assert plan == plan_pruning(built("text_transformer"), arch.example(), cfg)
    assert PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_planning_does_not_touch_the_model() -> None:
    arch, model = ARCHITECTURES["vit"], built("vit")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    plan_pruning(model, arch.example(), PruneConfig(ratio=0.5))
    assert any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("groups"), "malformed pruning plan"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d["groups"][0].update(removed="all"), "malformed pruning plan"),
    ],
)
def test_malformed_plans_are_refused(damage, message: str) -> None:
    arch = ARCHITECTURES["demo"]
    data = plan_pruning(built("demo"), arch.example(), PruneConfig()).to_dict()
    damage(data)
    with pytest.raises(InputError, match=message):
        PruningPlan.from_dict(data)


def test_out_of_range_indices_are_refused() -> None:
    arch = ARCHITECTURES["demo"]
    data = plan_pruning(built("demo"), arch.example(), PruneConfig()).to_dict()
    data["groups"][0]["removed"] = [0, data["groups"][0]["channels"]]
    with pytest.raises(InputError, match="invalid channel indices"):
        apply_plan(copy.deepcopy(built("demo")), PruningPlan.from_dict(data), arch.example())


def test_nothing_to_prune_is_said_plainly() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(InputError, match="nothing to prune"):
        plan_pruning(model, torch.zeros(1, 3, 8, 8), PruneConfig())


def test_global_pruning_removes_the_ratio_overall_with_uneven_groups() -> None:
    arch, model = ARCHITECTURES["demo"], built("demo")
    plan = plan_pruning(model, arch.example(), PruneConfig(ratio=0.5, global_pruning=True))
    channels = sum(g.channels for g in plan.groups)
    assert len({len(g.removed) / g.channels for g in plan.groups}) > 1
    assert sum(len(g.removed) for g in plan.groups) <= channels
    pruned = apply_plan(copy.deepcopy(model), plan, arch.example())
    with torch.no_grad():
        reference = zero_removed(model, plan, arch.example())(arch.example())
        torch.testing.assert_close(pruned(arch.example()), reference, rtol=1e-4, atol=output_tolerance(reference))


def test_per_layer_zero_keeps_a_stage_whole() -> None:
    arch, model = ARCHITECTURES["demo"], built("demo")
    plan = plan_pruning(model, arch.example(), PruneConfig(ratio=0.5, per_layer={"layer4": 0.0}))
    assert plan.groups and not any(m.startswith("layer4.") for g in plan.groups for m in g.members)


def test_example_input_refuses_unknown_dtypes() -> None:
    assert example_input([1, 4], "int64").dtype == torch.int64
    with pytest.raises(InputError, match="dtype float99"):
        example_input([1, 4], "float99")
