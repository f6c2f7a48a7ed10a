"""``spiralprune.deploy.model_file``: what an ONNX file ships, counted from the file alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spiralprune.core.errors import InputError
from spiralprune.deploy.model_file import ModelFile


def conv_net(path: Path, batch: int | str) -> Path:
    """Conv 3->8 (3x3, padding 1) on 16x16, ReLU, global pool, Gemm 8->10: every intermediate shape left to
    shape inference."""
    rng = np.random.default_rng(0)
    weights = {"conv_w": rng.standard_normal((8, 3, 3, 3)), "fc_w": rng.standard_normal((8, 10)), "fc_b": np.zeros(10)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["relu"]),
         helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["flat"]),
         helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["output"])],
        "net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


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
