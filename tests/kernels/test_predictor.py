"""The predictor's arithmetic on a measured table. How well it ranks and estimates real models on
this machine is measured, not asserted: benchmarks/predictor_quality.py (Spearman, median APE)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import onnx_layers, torch_layers
from spiralprune.kernels.predictor import Calibration, LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.zoo.lstm import lstm_classifier

X = torch.zeros(1, 3, 32, 32)


def cnn(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    ).eval()


def test_calibrate_fits_scale_and_overhead(table: LatencyTable) -> None:
    small, large = torch_layers(cnn(8), X), torch_layers(cnn(32), X)
    predictor = LatencyPredictor(table)
    s_small, s_large = predictor.operator_sum(small), predictor.operator_sum(large)
    fit = predictor.calibrate([(small, 2 * s_small + 0.5), (large, 2 * s_large + 0.5)])
    assert fit.scale == pytest.approx(2, rel=1e-6) and fit.overhead_ms == pytest.approx(0.5, rel=1e-6)
    assert predictor.predict(large) == pytest.approx(2 * s_large + 0.5)
    assert fit.to_dict() == {"scale": fit.scale, "overhead_ms": fit.overhead_ms, "samples": 2}


def test_one_sample_fits_the_scale_alone(table: LatencyTable) -> None:
    layers = torch_layers(cnn(8), X)
    predictor = LatencyPredictor(table)
    fit = predictor.calibrate([(layers, 3 * predictor.operator_sum(layers))])
    assert (fit.scale, fit.overhead_ms, fit.samples) == (pytest.approx(3), 0.0, 1)


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_onnx_and_torch_predictions_agree(name: str, table: LatencyTable, tmp_path: Path) -> None:
    predictor = LatencyPredictor(table, Calibration(1.2, 0.1))
    model, x = (cnn(8), X) if name == "cnn" else (lstm_classifier(8, 16, 4).eval(), torch.zeros(1, 10, 8))
    path = export_onnx(model, x, tmp_path / f"{name}.onnx")
    assert predictor.predict_onnx(path) == pytest.approx(predictor.predict_model(model, x))
    assert predictor.predict(onnx_layers(path)) == pytest.approx(1.2 * predictor.operator_sum(onnx_layers(path)) + 0.1)


def test_similar_models_fit_no_overhead(table: LatencyTable) -> None:
    layers = torch_layers(cnn(8), X)
    predictor = LatencyPredictor(table)
    fit = predictor.calibrate([(layers, 1.0), (layers, 2.0)])  # same model, two noisy measurements
    assert fit.overhead_ms == 0.0 and fit.scale > 0


def test_calibration_needs_measurements(table: LatencyTable) -> None:
    predictor = LatencyPredictor(table)
    with pytest.raises(InputError, match="at least one"):
        predictor.calibrate([])
    with pytest.raises(InputError, match="positive"):
        predictor.calibrate([(torch_layers(cnn(8), X), 0.0)])
    with pytest.raises(InputError, match="scale > 0"):
        Calibration(0.0, 1.0)
