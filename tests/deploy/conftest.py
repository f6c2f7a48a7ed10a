"""Tiny real ONNX models, exported from torch the way the pipeline's exporter does it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


def tiny_net(channels: int = 8):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, 10),
    ).eval()


def _export(path: Path, *, dynamic_batch: bool, channels: int = 8) -> Path:
    import torch

    model = tiny_net(channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is what the exporter uses
        torch.onnx.export(
            model,
            (torch.randn(1, 3, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None,
        )
    return path


@pytest.fixture(scope="session")
def tiny_module():
    """The torch module that ``tiny_onnx`` was exported from (same seed, same weights)."""
    return tiny_net()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conv net with input ``input`` [batch, 3, 16, 16] float32 and output ``output`` [batch, 10]."""
    return _export(tmp_path_factory.mktemp("models") / "tiny.onnx", dynamic_batch=True)


@pytest.fixture(scope="session")
def static_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same net exported with a static batch of 1."""
    return _export(tmp_path_factory.mktemp("models") / "static.onnx", dynamic_batch=False)


@pytest.fixture(scope="session")
def export_tiny():
    """``export_tiny(path, channels)``: the tiny net at another width (another file content) exported to ``path``."""
    return lambda path, channels: _export(path, dynamic_batch=True, channels=channels)
