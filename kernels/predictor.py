"""A model's latency predicted from its operators: ``scale · Σ operator ms + overhead``.

The sum comes from the latency table (each operator timed alone). Alone, an operator keeps its
weights in cache and skips the layout reorders and fused activations it has inside a model, so the
sum is off by a roughly constant factor and offset; ``calibrate`` fits both by least squares on a
few whole-model measurements, minimising relative error (a 1 ms model counts as much as a 10 ms one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import Layer, onnx_layers, torch_layers
from spiralprune.kernels.table import LatencyTable

SPREAD_FOR_OVERHEAD = 1.5


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    overhead_ms: float = 0.0
    samples: int = 0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.overhead_ms >= 0):
            raise InputError(f"a latency calibration needs scale > 0 and overhead_ms >= 0, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


class LatencyPredictor:
    def __init__(self, table: LatencyTable, calibration: Calibration = Calibration()) -> None:
        self.table = table
        self.calibration = calibration

    def operator_sum(self, layers: Sequence[Layer]) -> float:
        """Σ of the table latencies of ``layers`` in ms (uncalibrated)."""
        return float(sum(self.table.latencies(layer.op for layer in layers)))

    def predict(self, layers: Sequence[Layer]) -> float:
        c = self.calibration
        return c.scale * self.operator_sum(layers) + c.overhead_ms

    def per_layer(self, layers: Sequence[Layer]) -> dict[str, float]:
        """Each layer's calibrated table latency in ms, by name (a layer timed as several operators
        sums them); the per-graph overhead belongs to no layer, so these add up to ``predict`` less it."""
        predicted: dict[str, float] = {}
        for layer, ms in zip(layers, self.table.latencies(layer.op for layer in layers)):
            predicted[layer.name] = predicted.get(layer.name, 0.0) + self.calibration.scale * ms
        return predicted

    def predict_model(self, model, example_input) -> float:
        """Predicted ms of a torch model at ``example_input``'s shape."""
        return self.predict(torch_layers(model, example_input))

    def predict_onnx(self, path: Path, batch: int = 1) -> float:
        return self.predict(onnx_layers(path, batch))

    def calibrate(self, samples: Sequence[tuple[Sequence[Layer], float]]) -> Calibration:
        """Fit and keep ``scale`` and ``overhead_ms`` from (layers, measured ms) pairs.

        Both are fitted (non-negative least squares) when the samples' operator sums differ by at
        least ``SPREAD_FOR_OVERHEAD``; otherwise, or when that fit leaves no positive scale, the
        scale alone is (two similar models cannot tell a per-graph overhead from noise).
        """
        if not samples:
            raise InputError("calibration needs at least one whole-model measurement")
        sums = np.array([self.operator_sum(layers) for layers, _ in samples])
        measured = np.array([ms for _, ms in samples], dtype=float)
        if np.any(measured <= 0) or np.any(sums <= 0):
            raise InputError("calibration measurements and operator sums must be positive")
        scale = overhead = 0.0
        if sums.max() >= SPREAD_FOR_OVERHEAD * sums.min():
            design = np.stack([sums, np.ones_like(sums)], axis=1) / measured[:, None]
            (scale, overhead), _ = nnls(design, np.ones_like(measured))
        if scale <= 0:
            ratios = sums / measured  # least relative squares of measured ≈ scale · sum
            scale, overhead = float(ratios.sum() / (ratios**2).sum()), 0.0
        self.calibration = Calibration(float(scale), float(overhead), len(samples))
        return self.calibration
