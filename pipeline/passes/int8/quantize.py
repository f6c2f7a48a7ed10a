"""Post-training static INT8 quantization of an ONNX model.

ONNX Runtime's ``quantize_static`` in QDQ format (per-channel weights by default) after its
``quant_pre_process`` (shape inference and graph optimization), calibrated on real training
batches with min-max, entropy or percentile ranges, with 7-bit weights on CPUs whose U8S8 kernels
saturate (``int8_ranges``). ``spiralprune.pipeline.passes.int8.model`` makes the INT8 model
with these pieces (and, when it loses too much, quantization-aware recovery and the float
fallback, which uses ``Calibrated``, ``drawn_samples`` and ``input_batches``) and judges it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch.utils.data import Dataset, Subset

from spiralprune.core.errors import InputError
from spiralprune.deploy.fingerprint import u8s8_saturates
from spiralprune.pipeline.evaluate import evaluate_onnx
from spiralprune.pipeline.passes.int8.config import QuantizeConfig
from spiralprune.pipeline.tasks import Task

FLOAT, INT8 = "float", "int8"
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


def input_batches(train_set: Dataset, onnx_path: Path, batch_size: int) -> list[np.ndarray]:
    """``train_set`` in order, in batches, each checked against the model's input."""
    graph_input = onnx.load(str(onnx_path), load_external_data=False).graph.input[0]
    dims = [d.dim_value or None for d in graph_input.type.tensor_type.shape.dim]
    batches = []
    for start in range(0, len(train_set), batch_size):  # the inputs alone: a detector's targets need not batch
        inputs = torch.stack([train_set[i][0] for i in range(start, min(start + batch_size, len(train_set)))])
        sample = list(inputs.shape[1:])
        if len(sample) != len(dims) - 1 or any(d is not None and d != s for d, s in zip(dims[1:], sample)):
            raise InputError(f"the calibration data's samples have shape {sample}; the model takes {dims[1:]}")
        batches.append(inputs.numpy().astype(np.float32))
    return batches


def drawn_samples(train_set: Dataset, start: int, count: int) -> Subset:
    """Samples ``start`` to ``start + count`` of the training split in one seeded random order (seed 0):
    calibration takes the first ones and the fallback's sensitivity batches the next, so neither sees
    only the first classes of a split sorted by class (an ImageFolder), and the two never overlap."""
    order = np.random.default_rng(0).permutation(len(train_set))[start:start + count]
    return Subset(train_set, sorted(order.tolist()))


def calibration_batches(train_set: Dataset, onnx_path: Path, cfg: QuantizeConfig) -> list[np.ndarray]:
    """``cfg.calibration_batches`` training batches drawn at random (seeded), checked against the model's input."""
    if len(train_set) == 0:
        raise InputError("the calibration data's train split is empty")
    drawn = drawn_samples(train_set, 0, cfg.calibration_batches * cfg.batch_size)
    return input_batches(drawn, onnx_path, cfg.batch_size)


class _Reader(CalibrationDataReader):
    """ONNX Runtime's calibration data reader over fixed batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


class Calibrated:
    """A float model prepared once (ONNX Runtime's ``quant_pre_process``) in ``work``, its activation
    ranges computed once: the first ``quantize`` calibrates and writes ORT's calibration cache, the
    next ones (other nodes kept float) read the ranges from it instead of calibrating again."""

    def __init__(self, float_path: Path, work: Path, batches: list[np.ndarray], cfg: QuantizeConfig) -> None:
        self.prepared, self._ranges = work / "prepared.onnx", work / "calibration"
        self._input = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
        self._batches, self._cfg = batches, cfg
        quant_pre_process(str(float_path), str(self.prepared), skip_symbolic_shape=True)

    def quantize(self, out: Path, keep_float: Sequence[str] = ()) -> None:
        """The QDQ INT8 model, written to ``out``; the nodes ``keep_float`` are left out of quantization.

        Left out is not yet float: such a node still reads a DequantizeLinear, and ONNX Runtime then
        quantizes its weights anyway; ``spiralprune.pipeline.passes.int8.float_fallback`` rewires it to read float."""
        quantize_static(
            str(self.prepared), str(out), _Reader(self._input, self._batches), quant_format=QuantFormat.QDQ,
            # Unsigned activations, signed weights (U8S8): ONNX Runtime's CPU kernels fuse every
            # DQ-Conv-Q into QLinearConv only for these; with its 1.32 default (S8S8) 12 of the demo
            # teacher's 20 convolutions stayed float between DQ / Q nodes and INT8 ran 1.4x slower
            # than float, where U8S8 runs 2.6x faster (2.40 -> 0.91 ms, 2 threads, 2026-12-03).
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            reduce_range=int8_ranges().reduced, per_channel=self._cfg.per_channel, calibrate_method=METHODS[self._cfg.method],
            nodes_to_exclude=list(keep_float), calibration_cache_path=self._ranges,
            # A Relu / Clip before an unsigned Q is dropped by default (the Q clips alike); with nodes
            # kept float it stays, so that the tensor before a Q is what its float readers expect.
            extra_options={"QDQKeepRemovableActivations": bool(keep_float)},
        )


@dataclass(frozen=True)
class Int8Ranges:
    """The integers ONNX Runtime's INT8 model uses here: weights in ``[-weight, weight]`` (symmetric),
    activations in ``[0, activation]``; 7-bit weights (``reduced``; activations keep 8 bits, as
    ``quantize_static``'s ``reduce_range`` does) where its U8S8 kernels saturate on this CPU
    (``spiralprune.deploy.fingerprint.u8s8_saturates``)."""

    weight: int
    activation: int

    @property
    def reduced(self) -> bool:
        return self.weight < 127


def int8_ranges() -> Int8Ranges:
    """This machine's: 7-bit weights where U8S8 saturates, else the full ranges."""
    return Int8Ranges(64, 255) if u8s8_saturates() else Int8Ranges(127, 255)


def quantize_onnx(float_path: Path, out_path: Path, batches: list[np.ndarray], cfg: QuantizeConfig) -> float:
    """Write the QDQ INT8 model of ``float_path`` to ``out_path`` (whole or not at all); the seconds it took."""
    start = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spiral-quantize-", dir=out_path.parent) as work:
        quantized = Path(work) / out_path.name
        Calibrated(float_path, Path(work), batches, cfg).quantize(quantized)
        quantized.replace(out_path)
    return time.perf_counter() - start


def validation_accuracy(models: dict[str, Path], val_set: Dataset, task: Task) -> dict[str, float]:
    """Each ONNX model's quality on the validation split: the task's metric as shown (accuracy in %)."""
    metric = task.quality()
    return {name: metric.shown(evaluate_onnx(path, val_set, task), "INT8") for name, path in models.items()}
