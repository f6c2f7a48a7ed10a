"""Version-dependent build choices; the build itself runs only where tensorrt is installed."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spiralprune.deploy.backends.tensorrt_build import builder_flags, onnx_precision_problem, trt_major


def _model(path, *, fp16_weight=False, qdq=False):
    nodes, inits = [], [numpy_helper.from_array(np.ones((4, 4), np.float16 if fp16_weight else np.float32), "w")]
    x = "x"
    if fp16_weight:
        nodes.append(helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    nodes.append(helper.make_node("MatMul", [x, "w"], ["y"]))
    elem = TensorProto.FLOAT16 if fp16_weight else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", elem, ["batch", 4])], inits,
    )
    onnx.save(helper.make_model(graph), path)
    return path


def test_10x_sets_precision_flags_and_11x_does_not():
    assert trt_major("10.7.0") == 10 and trt_major("11.0.1") == 11
    assert builder_flags("10.7.0", "fp32", False) == ()
    assert builder_flags("10.7.0", "fp16", True) == ("FP16", "SPARSE_WEIGHTS")
    assert builder_flags("8.6.1", "int8", False) == ("INT8",)
    assert builder_flags("11.0.0", "fp16", False) == ()
    assert builder_flags("11.0.0", "int8", True) == ("SPARSE_WEIGHTS",)


def test_int8_needs_a_qdq_model_on_every_version(tmp_path):
    plain = _model(tmp_path / "plain.onnx")
    qdq = _model(tmp_path / "qdq.onnx", qdq=True)
    for version in ("10.7.0", "11.0.0"):
        assert "QuantizeLinear" in onnx_precision_problem(plain, version, "int8")
        assert onnx_precision_problem(qdq, version, "int8") is None


def test_fp16_on_11x_needs_an_onnx_cast_beforehand(tmp_path):
    plain = _model(tmp_path / "plain.onnx")
    half = _model(tmp_path / "half.onnx", fp16_weight=True)
    assert onnx_precision_problem(plain, "10.7.0", "fp16") is None  # the FP16 flag does it
    assert "strongly typed" in onnx_precision_problem(plain, "11.0.0", "fp16")
    assert onnx_precision_problem(half, "11.0.0", "fp16") is None
    assert onnx_precision_problem(plain, "11.0.0", "fp32") is None
