"""One trace serves a step: uniform plans, operator listings and the floor plan come from one ``PrunableModel``."""

from __future__ import annotations

import copy

import pytest
from architectures import ARCHITECTURES, HEAVY, built

from spiralprune.kernels.layers import torch_layers
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan, apply_plan, plan_pruning
from spiralprune.pipeline.prune import taylor

LIGHT = sorted(set(ARCHITECTURES) - HEAVY)


@pytest.mark.parametrize("name", LIGHT)
def test_the_floor_plan_leaves_every_allowed_group_one_unit_or_round_to(name: str) -> None:
    arch = ARCHITECTURES[name]
    model, x = built(name), arch.example(batch=1)
    prunable = PrunableModel(model, x)
    cfg = PruneConfig(round_to=8)
    plan = prunable.floor_plan(cfg)
    allowed = {g.root: g for g in prunable.groups_of(cfg)}
    assert plan.groups and {g.root for g in plan.groups} <= set(allowed)
    for group in plan.groups:
        fewest = 8 if allowed[group.root].unit == 1 else allowed[group.root].unit
        assert group.channels - len(group.removed) == fewest
    pruned = apply_plan(copy.deepcopy(model), plan, x)  # the floor is a model that can be built
    assert [layer.op for layer in prunable.layers(plan)] == [layer.op for layer in torch_layers(pruned, x)]


def test_uniform_plans_are_what_plan_pruning_makes_and_are_scored_once(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = ARCHITECTURES["demo"]
    model, x = built("demo"), arch.example(batch=1)
    calibration = arch.calibration()
    prunable = PrunableModel(model, x)
    calls = []
    scorer = taylor.taylor_group  # what CRITERIA["taylor-group"] names, looked up on every scoring
    monkeypatch.setattr(taylor, "taylor_group", lambda *args: calls.append(1) or scorer(*args))
    for ratio in (0.2, 0.5, 0.7):
        cfg = PruneConfig(criterion="taylor-group", ratio=ratio, round_to=8)
        assert prunable.uniform_plan(cfg, calibration) == plan_pruning(model, x, cfg, calibration=calibration)
    assert len(calls) == 1 + 3  # one scoring for the three ratios here, one per plan_pruning call
    assert prunable.layers(PruningPlan("l1", 0.0, ())) == torch_layers(prunable.work, x)
