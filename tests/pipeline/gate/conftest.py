"""A tiny digits-shaped classifier exported to ONNX, and budget files written for a test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from spiralprune.pipeline.export import export_onnx
from tests.pipeline.gate.digits_model import digits_net


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input ``input`` [batch, 1, 16, 16], output ``output`` [batch, 10]."""
    return export_onnx(digits_net(), torch.zeros(1, 1, 16, 16), tmp_path_factory.mktemp("gate") / "digits.onnx")


@pytest.fixture
def write_budget(tmp_path: Path):
    def write(name: str = "budget.yaml", **sections: object) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(sections))
        return path

    return write
