"""Layer-wise pruning: residual blocks found by tracing, removed whole, replayed, weighed in the knapsack."""

from __future__ import annotations

import copy

import pytest
import torch
from architectures import ARCHITECTURES, HEAVY, built
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import torch_layers
from spiralprune.kernels.predictor import Calibration, LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan, apply_plan
from spiralprune.pipeline.prune.blocks import block_rises, remove_blocks, residual_blocks
from spiralprune.pipeline.prune.latency_aware import plans_for_latency

EXPECTED = {
    "mobilenet_v2": ["features.3", "features.5", "features.6", "features.8", "features.9", "features.10",
                     "features.12", "features.13", "features.15", "features.16"],
    "resnet18": ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"],
    "demo": ["layer1"],  # digits_resnet: its first stage (one block) keeps the stem's width; later ones downsample
    "lstm": [],
}


class Residual(nn.Module):
    def __init__(self, channels: int, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels))
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Plain(nn.Module):  # same shape in and out, no skip: removing it is not a residual cut
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


class Net(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, 1, 1)
        self.stage = nn.Sequential(
            Residual(channels), Residual(channels), Plain(channels),
            Residual(channels, nn.Conv2d(channels, channels, 1)),  # a shortcut that computes: not an identity skip
            Residual(channels),
        )
        self.head = nn.Linear(channels, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stage(torch.relu(self.stem(x))).mean((2, 3)))


def net() -> Net:
    torch.manual_seed(0)
    model = Net().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # trained-looking statistics, so every block matters some
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    return model


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
CALIBRATION = [(torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 10)
               for i in range(2)]


def test_residual_blocks_are_the_identity_skips_only() -> None:
    assert residual_blocks(net()) == ["stage.0", "stage.1", "stage.4"]


@pytest.mark.parametrize("name", [n for n in EXPECTED if n not in HEAVY or n == "mobilenet_v2"])
def test_the_residual_blocks_of_known_architectures(name: str) -> None:
    assert residual_blocks(built(name)) == EXPECTED[name]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ARCHITECTURES]
)
def test_a_plan_without_every_block_replays_and_predicts_what_the_pruned_model_runs(name: str) -> None:
    """For every architecture: whatever blocks it has go, the plan survives JSON, replays on a fresh
    model, and the operators the planner lists for it are the replayed model's."""
    arch = ARCHITECTURES[name]
    model, x = built(name), arch.example(batch=1)
    prunable = PrunableModel(model, x)
    plan = prunable.depth_plan("sensitivity", prunable.blocks, {})
    replayed = apply_plan(copy.deepcopy(model), PruningPlan.from_dict(plan.to_dict()), x)
    listed = prunable.layers(plan)
    assert [(layer.name, layer.op) for layer in listed] == [(layer.name, layer.op) for layer in torch_layers(replayed, x)]
    with torch.no_grad():
        assert replayed(x).shape == model(x).shape
    assert len(listed) < len(prunable.layers(PruningPlan("sensitivity", 0.0, ()))) or not prunable.blocks


def test_blocks_and_channels_in_one_plan_replay_with_the_couplings_of_the_shallower_model() -> None:
    model = net()
    prunable = PrunableModel(model, X)
    removed = {g.root: tuple(range(g.channels // 2)) for g in prunable.groups if g.root != "head"}
    plan = prunable.depth_plan("sensitivity", ["stage.1"], removed)
    assert plan.blocks == ("stage.1",)
    assert all("stage.1." not in member for group in plan.groups for member in group.members)
    replayed = apply_plan(copy.deepcopy(model), PruningPlan.from_dict(plan.to_dict()), X)
    assert isinstance(replayed.stage[1], nn.Identity)
    assert [(layer.name, layer.op) for layer in prunable.layers(plan)] == [
        (layer.name, layer.op) for layer in torch_layers(replayed, X)
    ]


def test_a_plan_naming_a_layer_that_is_not_a_residual_block_is_refused() -> None:
    plan = PruningPlan("sensitivity", 0.0, (), blocks=("stage.2",))
    with pytest.raises(InputError, match=r"'stage.2' is not a residual block here"):
        apply_plan(net(), plan, X)


def test_a_version_1_plan_removes_no_block() -> None:
    data = PruningPlan("l1", 0.0, ()).to_dict()
    data.pop("blocks")
    data["version"] = 1
    assert PruningPlan.from_dict(data).blocks == ()


def test_block_rises_measure_each_removal_alone_and_leave_the_model_as_it_was() -> None:
    model = net()
    model.stage[4].body[1].weight.data.zero_()  # this block adds nothing: removing it costs nothing
    model.stage[4].body[1].bias.data.zero_()
    before = copy.deepcopy(model.state_dict())
    rises = block_rises(model, ["stage.0", "stage.1", "stage.4"], CALIBRATION)
    assert len(rises) == 3 and all(r >= 0 for r in rises)
    assert rises[2] == pytest.approx(0.0, abs=1e-6)
    assert max(rises) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [type(b).__name__ for b in model.stage] == ["Residual", "Residual", "Plain", "Residual", "Residual"]
    with torch.no_grad():
        kept = remove_blocks(copy.deepcopy(model), ["stage.4"])
        assert torch.allclose(kept(X), model(X), atol=1e-5)  # relu(0 + x) = x: x is already non-negative


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> LatencyPredictor:
    table = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path_factory.mktemp("latency-table"))
    return LatencyPredictor(table, Calibration(1.0, 0.0))


def test_the_knapsack_removes_a_free_block_first_and_predicts_what_the_plan_leaves(predictor: LatencyPredictor) -> None:
    model = net()
    model.stage[4].body[1].weight.data.zero_()  # removing stage.4 loses nothing and saves its conv
    model.stage[4].body[1].bias.data.zero_()
    prunable = PrunableModel(model, X)
    start = predictor.predict(prunable.layers(PruningPlan("sensitivity", 0.0, ())))
    cfg = PruneConfig(criterion="sensitivity", round_to=4)
    with_blocks = plans_for_latency(prunable, cfg, [0.9 * start, 0.3 * start], predictor=predictor,
                                    calibration=CALIBRATION, max_group_ratio=0.9, blocks=True)
    assert with_blocks[0].plan.blocks[:1] == ("stage.4",)
    for allocation in with_blocks:
        replayed = apply_plan(copy.deepcopy(model), allocation.plan, X)
        assert predictor.predict_model(replayed, X) == pytest.approx(allocation.predicted, rel=1e-9)
    channels_only = plans_for_latency(PrunableModel(model, X), cfg, [0.9 * start], predictor=predictor,
                                      calibration=CALIBRATION, max_group_ratio=0.9, blocks=False)
    assert channels_only[0].plan.blocks == ()
    per_layer = plans_for_latency(PrunableModel(model, X), PruneConfig(criterion="l1", round_to=4), [0.9 * start],
                                  predictor=predictor, calibration=CALIBRATION, max_group_ratio=0.9, blocks=True)
    assert per_layer[0].plan.blocks == ()  # L1 scores have no common unit with a block's loss rise


def test_the_floor_with_blocks_is_below_the_floor_of_channels_alone(predictor: LatencyPredictor) -> None:
    prunable = PrunableModel(net(), X)
    cfg = PruneConfig(criterion="sensitivity", round_to=4)
    deep, wide = prunable.floor_plan(cfg, blocks=True), prunable.floor_plan(cfg)
    assert deep.blocks == ("stage.0", "stage.1", "stage.4") and wide.blocks == ()
    assert predictor.predict(prunable.layers(deep)) < predictor.predict(prunable.layers(wide))


def test_every_rung_gets_a_plan_near_its_target_however_large_a_block_move_is(tmp_path) -> None:
    """A free block (its output zeroed: no loss rise) is the greedy's first move and takes 18 % of the
    cost at once; the refill then gives channels, or the block, back while each rung's goal allows, so
    a rung between "that block gone" and "more gone" gets its own plan (here 0.8: the block kept, a
    quarter of the channels cut). An operator table of known costs (a staircase of 4 channels): what
    the knapsack decides must not depend on how this machine times operators today."""
    from tests.pipeline.passes.steps.test_plan_search import StaircaseTable

    predictor = LatencyPredictor(StaircaseTable("ort-cpu", threads=1, cache_dir=tmp_path), Calibration(1.0, 0.0))
    model = net()
    model.stage[4].body[1].weight.data.zero_()
    model.stage[4].body[1].bias.data.zero_()
    prunable = PrunableModel(model, X)
    start = predictor.predict(prunable.layers(PruningPlan("sensitivity", 0.0, ())))
    cfg, rungs = PruneConfig(criterion="sensitivity", round_to=4), (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
    ladder = plans_for_latency(prunable, cfg, [f * start for f in rungs], predictor=predictor,
                               calibration=CALIBRATION, max_group_ratio=0.9, blocks=True)
    assert all(a.met and a.predicted >= 0.86 * a.goal for a in ladder), [a.predicted / a.goal for a in ladder]
    assert ladder[0].plan.blocks == ("stage.4",) and ladder[2].plan.blocks == ()
    assert ladder[2].predicted >= 0.95 * ladder[2].goal
    for allocation in ladder:
        replayed = apply_plan(copy.deepcopy(model), allocation.plan, X)
        assert predictor.predict_model(replayed, X) == pytest.approx(allocation.predicted, rel=1e-9)
