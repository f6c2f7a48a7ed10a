"""A tiny ONNX classifier built by hand (no torch export), for tests that need a real ONNX file of known shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


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
