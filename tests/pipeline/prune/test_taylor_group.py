"""``taylor-group``: per-channel loss change of a coupled group, comparable across layers, used raw when allocating."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from architectures import ARCHITECTURES, built
from torch import Tensor, nn

from spiralprune.pipeline.prune import PrunableModel, PruneConfig, plan_pruning
from spiralprune.pipeline.prune.attention import split_attention
from spiralprune.pipeline.prune.criteria import CRITERIA, get_criterion
from spiralprune.pipeline.prune.graph import build_graph, prunable_groups
from spiralprune.pipeline.prune.group import PrunableGroup
from spiralprune.pipeline.prune.latency_aware import plans_for_latency

TAYLOR = get_criterion("taylor-group")


class Residual(nn.Module):
    """Stem, one BasicBlock-like residual block (its output channels are coupled to the stem's), head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.conv2 = nn.Conv2d(12, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


class TwoBranches(nn.Module):
    """Two identical branches; the first one's output counts ten times in the logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 16, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, padding=1)
        self.head_a = nn.Linear(16, 5)
        self.head_b = nn.Linear(16, 5)
        self.b.load_state_dict(self.a.state_dict())
        self.head_b.load_state_dict(self.head_a.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        a = self.head_a(F.relu(self.a(x)).mean((2, 3)))
        b = self.head_b(F.relu(self.b(x)).mean((2, 3)))
        return 10 * a + b


def _randomized(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _calibration(batches: int = 2, classes: int = 5) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, classes, (4,), generator=generator))
        for _ in range(batches)
    ]


def _groups(model: nn.Module, example: Tensor, **cfg: object) -> dict[str, PrunableGroup]:
    graph = build_graph(model, example)
    return {c.root: c for c in prunable_groups(graph, model, PruneConfig(protect_first_last=False, **cfg))}


def test_scores_every_channel_of_a_residual_model_non_negative_and_leaves_the_model_as_it_was() -> None:
    model = _randomized(Residual())
    model.train()
    model.conv1.weight.requires_grad_(False)
    state = copy.deepcopy(model.state_dict())
    groups = _groups(model, torch.zeros(1, 3, 8, 8))
    residual = next(c for c in groups.values() if {"stem", "conv2", "stem_bn", "bn2"} <= set(c.members))
    assert "conv1" in groups  # and the stem + block output channels are one coupled group
    scores = TAYLOR.score(model, list(groups.values()), _calibration())
    for group, score in zip(groups.values(), scores):
        assert score is not None and score.shape == (group.channels,)
        assert bool(torch.isfinite(score).all()) and bool((score >= 0).all()) and float(score.sum()) > 0
    assert residual.channels == 8
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)
    assert model.training and all(m.training for m in model.modules())
    assert not model.conv1.weight.requires_grad and model.stem.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_a_channel_whose_weights_are_zero_scores_zero() -> None:
    model = _randomized(Residual())
    with torch.no_grad():
        model.conv1.weight[5] = 0  # conv1's channel 5: its conv filter and its BatchNorm scale and shift
        model.bn1.weight[5] = 0
        model.bn1.bias[5] = 0
        for layer in (model.stem, model.stem_bn, model.conv2, model.bn2):  # channel 2 of the residual group
            layer.weight[2] = 0
            if layer.bias is not None:
                layer.bias[2] = 0
    groups = _groups(model, torch.zeros(1, 3, 8, 8))
    scores = dict(zip(groups, TAYLOR.score(model, list(groups.values()), _calibration())))
    residual = next(root for root, c in groups.items() if "conv2" in c.members)
    assert float(scores["conv1"][5]) == 0 and float(scores["conv1"].sum()) > 0
    assert float(scores[residual][2]) == 0 and float(scores[residual].sum()) > 0


def test_score_is_the_squared_weight_times_gradient_summed_per_batch() -> None:
    """Squared per batch, then summed over batches: a channel's score is additive over batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4)).eval()
    calibration = [(torch.randn(8, 6), torch.randint(0, 4, (8,))) for _ in range(2)]
    groups = list(_groups(model, torch.zeros(1, 6)).values())
    assert [c.root for c in groups] == ["0"]
    (score,) = TAYLOR.score(model, groups, calibration)
    expected = torch.zeros(10, dtype=torch.float64)
    for inputs, labels in calibration:
        weight, bias = (p.detach().clone().requires_grad_(True) for p in (model[0].weight, model[0].bias))
        logits = model[2](F.relu(F.linear(inputs, weight, bias)))
        gw, gb = torch.autograd.grad(F.cross_entropy(logits, labels), (weight, bias))
        expected += ((weight * gw).sum(1) + bias * gb).double().detach().square()
    torch.testing.assert_close(score, expected.float(), rtol=1e-5, atol=0)
    (first,), (second,) = (TAYLOR.score(model, groups, [batch]) for batch in calibration)
    torch.testing.assert_close(score, first + second, rtol=1e-5, atol=0)


def test_a_layer_that_counts_ten_times_in_the_loss_scores_a_hundred_times_more() -> None:
    model = TwoBranches().eval()
    groups = _groups(model, torch.zeros(1, 3, 8, 8))
    scores = dict(zip(groups, TAYLOR.score(model, list(groups.values()), _calibration())))
    torch.testing.assert_close(scores["a"], 100 * scores["b"], rtol=1e-3, atol=0)
    assert TAYLOR.comparable_across_layers
    # Torch-Pruning's group Taylor divides each group by its mean: both branches look alike.
    tp_scores = dict(zip(groups, CRITERIA["tp-taylor"].score(model, list(groups.values()), _calibration())))
    assert not CRITERIA["tp-taylor"].comparable_across_layers
    torch.testing.assert_close(tp_scores["a"].mean(), tp_scores["b"].mean())


def test_the_knapsack_and_global_pruning_cut_the_branch_that_matters_less() -> None:
    model, example = TwoBranches().eval(), torch.zeros(1, 3, 8, 8)
    cfg = PruneConfig(criterion="taylor-group", protect_first_last=False)
    (allocation,) = plans_for_latency(PrunableModel(model, example), cfg, [0.8 * _macs(model, example)], cost="macs",
                                      calibration=_calibration())
    assert allocation.met
    assert allocation.kept["b"] < allocation.kept["a"]  # a normalised criterion sees two equal branches
    plan = plan_pruning(model, example, cfg.model_copy(update={"global_pruning": True, "ratio": 0.25}),
                        calibration=_calibration())
    removed = {group.root: len(group.removed) for group in plan.groups}
    assert removed.get("b", 0) > removed.get("a", 0)


def _macs(model: nn.Module, example: Tensor) -> int:
    from spiralprune.kernels.layers import torch_layers

    return sum(layer.op.macs() for layer in torch_layers(model, example))


@pytest.mark.parametrize("name", ["lstm", "text_transformer"])
def test_lstm_and_attention_groups_are_scored(name: str) -> None:
    arch = ARCHITECTURES[name]
    model = split_attention(copy.deepcopy(built(name)))
    groups = list(_groups(model, arch.example()).values())
    scores = TAYLOR.score(model, groups, arch.calibration())
    assert groups and all(s is not None and s.shape == (c.channels,) for c, s in zip(groups, scores))
    assert all(bool((s >= 0).all()) and float(s.sum()) > 0 for s in scores)


def test_an_lstm_hidden_unit_with_zero_gate_rows_scores_zero() -> None:
    arch = ARCHITECTURES["lstm"]
    model = copy.deepcopy(built("lstm"))
    lstm = next(m for m in model.modules() if isinstance(m, nn.LSTM))
    hidden = lstm.hidden_size
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name)[[gate * hidden + 3 for gate in range(4)]] = 0
    groups = [c for c in _groups(model, arch.example()).values() if any(
        item.dep.target.module is lstm for item in c.group.items)]
    (score,) = TAYLOR.score(model, groups[:1], arch.calibration())
    assert float(score[3]) == 0 and float(score.sum()) > 0
