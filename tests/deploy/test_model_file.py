"""``spiralprune.deploy.model_file``: what an ONNX file ships, counted from the file alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_onnx import conv_net

from spiralprune.core.errors import InputError
from spiralprune.deploy.model_file import ModelFile


@pytest.mark.parametrize(("batch", "calls"), [("batch", 1), (1, 1), (4, 4)])
def test_params_and_macs_are_counted_from_the_file(tmp_path: Path, batch: int | str, calls: int) -> None:
    """A symbolic batch counts as one sample; a fixed batch of four is four samples' arithmetic."""
    path = conv_net(tmp_path / "net.onnx", batch)
    facts = ModelFile.of(path)
    conv, gemm = 8 * 16 * 16 * (3 * 3 * 3), 10 * 8  # output elements x each one's reduction
    assert facts.macs == calls * (conv + gemm)
    assert facts.params == 8 * 3 * 3 * 3 + 8 * 10 + 10
    assert facts.size_mb == path.stat().st_size / 1e6


def test_a_file_that_is_not_onnx_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(InputError, match="model.onnx: not a readable ONNX model"):
        ModelFile.of(path)
