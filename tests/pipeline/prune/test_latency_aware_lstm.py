"""The latency-aware allocator on the speech case study's LSTM classifier: hidden units are priced."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from spiralprune.kernels.layers import torch_layers
from spiralprune.kernels.ops import LSTM
from spiralprune.kernels.predictor import Calibration, LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, apply_plan
from spiralprune.pipeline.prune.latency_aware import plans_for_latency
from spiralprune.pipeline.zoo.lstm import lstm_classifier

X = torch.randn(1, 51, 40, generator=torch.Generator().manual_seed(0))


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return lstm_classifier(n_features=40, hidden=64, num_classes=12).eval()


def macs(model: torch.nn.Module) -> int:
    return sum(layer.op.macs() for layer in torch_layers(model, X))


def test_macs_allocation_prices_the_hidden_units_the_pruned_lstm_loses() -> None:
    model = classifier()
    start = macs(model)
    goals = [0.6 * start, 0.3 * start]
    prunable = PrunableModel(model, X)
    allocations = plans_for_latency(prunable, PruneConfig(round_to=8), goals, cost="macs")
    for allocation, listed in zip(allocations, [prunable.layers(a.plan) for a in allocations]):
        pruned = apply_plan(copy.deepcopy(model), allocation.plan, X)
        assert allocation.met and allocation.start == start
        assert allocation.predicted == macs(pruned)
        assert [layer.op for layer in listed] == [layer.op for layer in torch_layers(pruned, X)]
        hidden = pruned.lstm.hidden_size
        assert hidden == allocation.kept["lstm"] and hidden % 8 == 0 and hidden < 64
        assert listed[0].op == LSTM(1, 51, 40, hidden)


def test_latency_allocation_meets_the_target_and_the_pruned_model_predicts_the_same(tmp_path: Path) -> None:
    table = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    predictor = LatencyPredictor(table, Calibration(1.1, 0.05))
    model = classifier()
    start = predictor.predict_model(model, X)
    # Half way down to the lowest rung (8 hidden units) as this machine's table prices it, so the
    # goal is reachable however fast the operators measured today.
    torch.manual_seed(0)
    floor = predictor.predict_model(lstm_classifier(n_features=40, hidden=8, num_classes=12).eval(), X)
    goal = (start + floor) / 2
    (allocation,) = plans_for_latency(PrunableModel(model, X), PruneConfig(round_to=8), [goal], predictor=predictor)
    assert allocation.start == pytest.approx(start)
    assert allocation.met and allocation.predicted <= goal
    pruned = apply_plan(copy.deepcopy(model), allocation.plan, X)
    assert predictor.predict_model(pruned, X) == pytest.approx(allocation.predicted, rel=1e-9)
    assert pruned.lstm.hidden_size == allocation.kept["lstm"] < 64
