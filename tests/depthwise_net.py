"""A small depthwise-separable CNN trained on the digits, and one whose per-tensor INT8 loses points the
way MobileNetV2's does, for the quantization tests.

MobileNetV2 loses its accuracy to per-tensor INT8 weights (Fashion-MNIST: 83.1 % float, 18.5 % INT8)
because its batch norms, folded into the depthwise convolutions, give some channels weights many
times larger than others, and one scale per tensor then rounds the small channels away.
``hostile`` makes that happen on purpose: channels of a trained model are rescaled (a channel's
pointwise output divided by ``c`` through its batch norm, the depthwise batch norm's statistics
scaled to match, so that the depthwise convolution's folded weight is ``c`` times larger; other
channels the other way round). The float model computes what it computed; per-tensor INT8 does not.
Trained on the CPU with a fixed seed: the same weights on every run.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from spiralprune.pipeline.data import load_datasets
from spiralprune.pipeline.passes.int8.quantize import int8_ranges

SHAPE = [1, 1, 16, 16]
SCALE = 10.0
# What quantization-aware recovery gives back of ``hostile``'s per-tensor INT8 depends on the CPU, because
# ONNX Runtime's weights are 8-bit where its U8S8 kernels are exact (VNNI) and 7-bit where they saturate
# (``spiralprune.pipeline.passes.int8.quantize.int8_ranges``). Measured: within 1 point of float with 8 bits (Intel Xeon,
# where these tests were written); on an AMD EPYC without VNNI (2026-12-06) per-tensor 7-bit INT8 fell to
# 40.8 % and recovery (5 epochs at 0.001) brought it to 90.6 % against float's 94.7 %, and the
# simulation's top-1 agreed with ONNX Runtime's on 97.8 % of the digits (98 % or more with 8 bits).
REDUCED = int8_ranges().reduced
RECOVERED_DROP = 5.0 if REDUCED else 1.0  # points below float that recovery reaches on this CPU
SIMULATED_AGREEMENT = 0.97 if REDUCED else 0.98  # of the simulation's top-1 with ONNX Runtime's INT8


# The points of validation accuracy per-tensor INT8 must take from ``hostile`` for the tests of the remedies
# (fallback, recovery) to mean what they say. A CPU's float arithmetic trains slightly other weights, and its
# INT8 kernels round differently: on an AMD EPYC with AVX-512 VNNI (2026-12-07) per-tensor INT8 took 3.6
# points at SCALE 10, and 26 at SCALE 15, which 5 epochs of recovery no longer bring back.
HOSTILE_LOSS = 5.0


@cache
def hostile_int8_loss() -> float:
    """The points per-tensor INT8 (this CPU's ONNX Runtime) takes from ``hostile`` on the digits' validation split."""
    import tempfile
    from pathlib import Path

    from spiralprune.pipeline.export import export_onnx
    from spiralprune.pipeline.passes.int8.config import QuantizeConfig
    from spiralprune.pipeline.passes.int8.quantize import (FLOAT, INT8, calibration_batches, quantize_onnx,
                                                        validation_accuracy)
    from spiralprune.pipeline.tasks import build_task

    train, val = load_datasets("digits", SHAPE)
    cfg = QuantizeConfig(per_channel=False)
    with tempfile.TemporaryDirectory(prefix="spiral-hostile-") as work:
        float_onnx = export_onnx(hostile(), torch.zeros(SHAPE), Path(work) / "float.onnx")
        quantize_onnx(float_onnx, Path(work) / "int8.onnx", calibration_batches(train, float_onnx, cfg), cfg)
        accuracy = validation_accuracy({FLOAT: float_onnx, INT8: Path(work) / "int8.onnx"}, val, build_task(num_classes=10))
    return accuracy[FLOAT] - accuracy[INT8]


def needs_hostile_loss() -> None:
    """Skip a remedy's test where per-tensor INT8 does not take ``HOSTILE_LOSS`` points from ``hostile`` on this
    CPU: there is nothing for the remedy to bring back that the test could tell from noise."""
    import pytest

    lost = hostile_int8_loss()
    if lost <= HOSTILE_LOSS:
        pytest.skip(f"per-tensor INT8 takes {lost:.1f} points from the hostile model on this CPU, not the more than "
                    f"{HOSTILE_LOSS:.0f} the remedies' tests need (its float arithmetic and INT8 kernels differ)")


def _unit(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class DepthwiseNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_unit(1, w), *_unit(w, w, groups=w), *_unit(w, 2 * w, kernel=1),
            *_unit(2 * w, 2 * w, 2, groups=2 * w), *_unit(2 * w, 2 * w, kernel=1),
            *_unit(2 * w, 2 * w, 2, groups=2 * w), *_unit(2 * w, 4 * w, kernel=1),
        )
        self.fc = nn.Linear(4 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


# Torch threads while ``trained`` trains: the thread count sets the order of float sums, which ten epochs of
# Adam turn into other weights; trained on whatever a test before had set, the hostile model's per-tensor INT8
# loss was 3.6 points with 2 threads and 18 with 1 (2026-12-07, this AMD EPYC), and the tests passed or failed
# by the order they ran in. The weights the tests were tuned on are the 2-thread ones.
TRAIN_THREADS = 2


@cache
def _trained_state() -> dict[str, torch.Tensor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        torch.manual_seed(0)
        model = DepthwiseNet()
        train, _ = load_datasets("digits", SHAPE)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(10):
            model.train()
            for x, y in torch.utils.data.DataLoader(train, batch_size=64, shuffle=True):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained() -> nn.Module:
    """The network trained on the digits (about 90 % validation accuracy), in eval mode."""
    model = DepthwiseNet()
    model.load_state_dict(_trained_state())
    return model.eval()


def hostile() -> nn.Module:
    """``trained`` with every other channel of its second depthwise convolution rescaled by ``SCALE``
    or ``1 / SCALE`` as folded: the same function in float, per-tensor INT8 rounds it apart."""
    model = trained()
    pointwise_norm, depthwise_norm = model.features[7], model.features[10]
    with torch.no_grad():
        for k in range(0, 16, 2):
            c = SCALE if k % 4 == 0 else 1 / SCALE
            pointwise_norm.weight[k] /= c
            pointwise_norm.bias[k] /= c
            depthwise_norm.running_mean[k] /= c
            depthwise_norm.running_var[k] /= c * c
    return model
