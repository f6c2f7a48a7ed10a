"""The zeroed reference catches a surgery that removed other channels than the plan names."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from architectures import ARCHITECTURES, built, output_tolerance

from spiralprune.pipeline.prune import (
    PruneConfig,
    PruningPlan,
    apply_plan,
    plan_pruning,
    zero_removed,
)


def test_reference_leaves_the_original_untouched() -> None:
    arch, model = ARCHITECTURES["demo"], built("demo")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    plan = plan_pruning(model, arch.example(), PruneConfig(ratio=0.5))
    zero_removed(model, plan, arch.example())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_an_empty_plan_changes_nothing() -> None:
    arch, model = ARCHITECTURES["vit"], built("vit")
    example = arch.example()
    with torch.no_grad():
        torch.testing.assert_close(zero_removed(model, PruningPlan("l1", 0.3, ()), example)(example), model(example))


def test_removing_neighbouring_channels_is_caught() -> None:
    arch, model = ARCHITECTURES["demo"], built("demo")
    example = arch.example()
    plan = plan_pruning(model, example, PruneConfig(ratio=0.3))
    group = plan.groups[0]
    kept = sorted(set(range(group.channels)) - set(group.removed))
    shifted = tuple(sorted(kept[: len(group.removed)]))  # as many channels, but the wrong ones
    wrong = PruningPlan(plan.criterion, plan.ratio, (replace(group, removed=shifted), *plan.groups[1:]))
    with torch.no_grad():
        reference = zero_removed(model, plan, example)(example)
        honest = apply_plan(copy.deepcopy(model), plan, example)(example)
        mistaken = apply_plan(copy.deepcopy(model), wrong, example)(example)
    tolerance = output_tolerance(reference)
    torch.testing.assert_close(honest, reference, rtol=1e-4, atol=tolerance)
    assert float((mistaken - reference).abs().max()) > 100 * tolerance
