from __future__ import annotations

import copy

import pytest
import torch
from architectures import ARCHITECTURES, HEAVY, built

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import torch_layers
from spiralprune.kernels.predictor import Calibration, LatencyPredictor
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan, apply_plan, original_channels, plan_pruning
from spiralprune.pipeline.prune.latency_aware import plans_for_latency
from spiralprune.pipeline.prune.policy import uniform_kept

DEMO = ARCHITECTURES["demo"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> LatencyPredictor:
    """A table of known costs (``StaircaseTable``): what the allocation decides is tested on it, not on how
    this machine timed every channel count today (the real table's timing is ``tests/kernels``'s)."""
    from tests.pipeline.passes.steps.test_plan_search import StaircaseTable

    table = StaircaseTable("ort-cpu", threads=1, cache_dir=tmp_path_factory.mktemp("latency-table"))
    return LatencyPredictor(table, Calibration(1.1, 0.05))


def macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    return sum(layer.op.macs() for layer in torch_layers(model, x))


def plan_for_latency(model: torch.nn.Module, x: torch.Tensor, cfg: PruneConfig, goal: float, **options):
    return plans_for_latency(PrunableModel(model, x), cfg, [goal], **options)[0]


@pytest.mark.slow
@pytest.mark.parametrize("round_to", [8, None])
def test_meets_the_latency_goal_and_the_pruned_model_predicts_the_same(
    predictor: LatencyPredictor, round_to: int | None
) -> None:
    model, x = built("demo"), DEMO.example(batch=1)
    start = predictor.predict_model(model, x)
    cfg = PruneConfig(round_to=round_to)
    # Halfway to the cheapest plan the caps allow: reachable whatever this machine's table says.
    lowest = plan_for_latency(model, x, cfg, 1e-9, predictor=predictor)
    assert not lowest.met and lowest.predicted < start
    goal = (start + lowest.predicted) / 2
    allocation = plan_for_latency(model, x, cfg, goal, predictor=predictor)
    assert allocation.met and allocation.predicted <= goal
    assert allocation.start == pytest.approx(start)
    pruned = apply_plan(copy.deepcopy(model), allocation.plan, x)
    assert predictor.predict_model(pruned, x) == pytest.approx(allocation.predicted, rel=1e-9)
    for group in allocation.plan.groups:
        kept = group.channels - len(group.removed)
        assert kept == allocation.kept[group.root]
        # never below what the uniform ratio of the cap (0.9) leaves: 3 of 32 channels, not 3.2
        floor = uniform_kept(group.channels // group.unit, 0.9, round_to if group.unit == 1 else None)
        assert kept >= min(group.channels, floor * group.unit)
        if round_to:
            assert kept % round_to == 0


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if ARCHITECTURES[name].spec.startswith("torchvision:") else name
        for name in sorted(set(ARCHITECTURES) - HEAVY)
    ],
)
def test_macs_allocation_is_consistent_with_the_pruned_model(name: str) -> None:
    """Channels of every operator follow the groups: the allocator's MACs are the pruned model's."""
    arch = ARCHITECTURES[name]
    model, x = built(name), arch.example(batch=1)
    calibration = arch.calibration()
    start = macs(model, x)
    allocation = plan_for_latency(
        model, x, PruneConfig(criterion="l1"), 0.7 * start, cost="macs", calibration=calibration
    )
    pruned = apply_plan(copy.deepcopy(model), allocation.plan, x)
    assert allocation.start == start
    assert allocation.predicted == macs(pruned, x)
    assert allocation.plan.groups, "something was removed"


def test_unreachable_goal_returns_the_cheapest_plan_unmet(predictor: LatencyPredictor) -> None:
    model, x = built("demo"), DEMO.example(batch=1)
    allocation = plan_for_latency(model, x, PruneConfig(round_to=8), 1.0, cost="macs", max_group_ratio=0.5)
    assert not allocation.met
    for group in allocation.plan.groups:
        assert len(group.removed) <= group.channels // 2


@pytest.mark.slow
def test_listed_layers_predict_what_the_pruned_models_predict(predictor: LatencyPredictor) -> None:
    model, x = built("demo"), DEMO.example(batch=1)
    plans = [PruningPlan("l1", 0.0, ()), *(plan_pruning(model, x, PruneConfig(ratio=r)) for r in (0.2, 0.7))]
    prunable = PrunableModel(model, x)
    predicted = [predictor.predict(prunable.layers(plan)) for plan in plans]
    assert predicted[0] > predicted[2]  # not necessarily > predicted[1]: unaligned counts can be slower
    for plan, ms in zip(plans, predicted):
        assert ms == pytest.approx(predictor.predict_model(apply_plan(copy.deepcopy(model), plan, x), x), rel=1e-9)


def test_listing_layers_refuses_a_plan_of_another_model() -> None:
    x = DEMO.example(batch=1)
    plan = plan_pruning(built("demo"), x, PruneConfig(ratio=0.5))
    other = ARCHITECTURES["resnet18"]
    with pytest.raises(InputError, match="does not fit"):
        PrunableModel(built("resnet18"), other.example(batch=1)).layers(plan)


def test_a_ladder_of_goals_is_one_pass_of_the_single_goal_allocation() -> None:
    model, x = built("demo"), DEMO.example(batch=1)
    start = macs(model, x)
    goals = [0.5 * start, 0.8 * start, 0.65 * start]
    ladder = plans_for_latency(PrunableModel(model, x), PruneConfig(round_to=8), goals, cost="macs")
    assert [a.goal for a in ladder] == goals
    for allocation, goal in zip(ladder, goals):
        alone = plan_for_latency(model, x, PruneConfig(round_to=8), goal, cost="macs")
        assert allocation.plan == alone.plan and allocation.predicted == alone.predicted and allocation.met
    assert ladder[1].plan.ratio < ladder[2].plan.ratio < ladder[0].plan.ratio


def test_bad_arguments_are_clear_errors(predictor: LatencyPredictor) -> None:
    model, x = built("demo"), DEMO.example(batch=1)
    with pytest.raises(InputError, match="predictor"):
        plan_for_latency(model, x, PruneConfig(), 1.0)
    with pytest.raises(InputError, match="cost"):
        plan_for_latency(model, x, PruneConfig(), 1.0, predictor=predictor, cost="params")
    with pytest.raises(InputError, match="positive"):
        plan_for_latency(model, x, PruneConfig(), float("nan"), predictor=predictor)
    with pytest.raises(InputError, match="max_group_ratio"):
        plan_for_latency(model, x, PruneConfig(), 1.0, predictor=predictor, max_group_ratio=1.0)


def test_max_group_ratio_counts_from_the_channels_before_the_first_step() -> None:
    """A group pruned by an earlier step may lose only what is left of ``max_group_ratio`` of its original channels."""
    model, x = built("demo"), DEMO.example(batch=1)
    first = plan_pruning(model, x, PruneConfig(ratio=0.5, round_to=8))
    pruned = apply_plan(copy.deepcopy(model), first, x)
    original = original_channels([first])
    assert original and all(channels in (16, 32, 64, 128) for channels in original.values())
    cfg = PruneConfig(round_to=8)
    (capped,) = plans_for_latency(PrunableModel(pruned, x), cfg, [1.0], cost="macs", max_group_ratio=0.75,
                                  original=original)
    (per_step,) = plans_for_latency(PrunableModel(pruned, x), cfg, [1.0], cost="macs", max_group_ratio=0.75)
    assert not capped.met  # 1 MAC: every group goes as low as it may
    for root, kept in capped.kept.items():
        assert kept >= 0.25 * original.get(root, kept)
    assert any(kept < 0.25 * original[root] for root, kept in per_step.kept.items() if root in original)


@pytest.mark.parametrize("cap", [0.5, 0.8])
def test_the_floor_of_the_cap_is_the_uniform_ratio_of_the_same_value(cap: float) -> None:
    """A run capped at ``max_ratio`` r can reach exactly the structure a uniform ratio r gives (its
    rounding included: at 0.8 with round_to 8 the demo's 96 channels keep 16, not 24), and no further."""
    model, x = built("demo"), DEMO.example(batch=1)
    cfg = PruneConfig(round_to=8)
    uniform = plan_pruning(model, x, cfg.model_copy(update={"ratio": cap}))
    (deepest,) = plans_for_latency(PrunableModel(model, x), cfg, [1.0], cost="macs", max_group_ratio=cap)
    assert not deepest.met  # 1 MAC: every group as low as the cap lets it go
    roots = {g.root for g in uniform.groups}
    assert {g.root for g in deepest.plan.groups} == roots
    assert {g.root: g.channels - len(g.removed) for g in uniform.groups} == {
        root: kept for root, kept in deepest.kept.items() if root in roots}
