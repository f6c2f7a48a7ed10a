"""``spiral quantize`` and ``pipeline.quantize`` on real ONNX Runtime quantization of a real model.

Acceptance rules are tested with limits far from this machine's speed: a speedup of 0.01x over the
float model is always granted, 100x never is. No test asserts how fast INT8 runs here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from pipeline.cli import main
from pipeline.config import QuantizeConfig
from pipeline.export import export_onnx
from pipeline.models import build_model
from pipeline.quantize import METHODS, calibration_batches, quantize_onnx
from pipeline.data import load_datasets

pytestmark = pytest.mark.slow
SPEC = "pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"
SHAPE = "1,1,16,16"
QUICK = ["--max-duration", "1.0", "--threads", "1", "--calibration-batches", "4"]


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    return export_onnx(build_model(SPEC), torch.zeros(1, 1, 16, 16), tmp_path_factory.mktemp("float") / "model.onnx")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_calibration_method_writes_a_qdq_model_with_per_channel_weights(method, float_onnx, tmp_path):
    cfg = QuantizeConfig(method=method, calibration_batches=2, batch_size=16)
    train, _ = load_datasets("digits", [1, 1, 16, 16])
    out = tmp_path / "q" / "model.int8.onnx"
    seconds = quantize_onnx(float_onnx, out, calibration_batches(train, float_onnx, cfg), cfg)
    assert seconds > 0 and sorted(p.name for p in out.parent.iterdir()) == ["model.int8.onnx"]
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    scales = {i.name: list(i.dims) for i in graph.initializer}
    weight_scales = [scales[n.input[1]] for n in graph.node
                     if n.op_type == "DequantizeLinear" and n.input[1] in scales and scales[n.input[1]]]
    assert weight_scales and all(dims[0] > 1 for dims in weight_scales)  # one scale per output channel


def test_onnx_runtime_runs_every_convolution_of_the_int8_model_as_an_int8_kernel(float_onnx, tmp_path):
    """The graph ORT optimises the QDQ model into has no float convolution left (U8S8 fuses; S8S8 did not)."""
    cfg = QuantizeConfig(calibration_batches=2, batch_size=16)
    train, _ = load_datasets("digits", [1, 1, 16, 16])
    out = tmp_path / "model.int8.onnx"
    quantize_onnx(float_onnx, out, calibration_batches(train, float_onnx, cfg), cfg)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    convolutions = sum(n.op_type == "Conv" for n in onnx.load(str(float_onnx)).graph.node)
    assert "Conv" not in ops and ops.count("QLinearConv") == convolutions


def test_an_accepted_quantization_is_written_with_its_numbers(tmp_path, capsys):
    out, report = tmp_path / "m.int8.onnx", tmp_path / "q.json"
    code = main(["quantize", SPEC, "--data", "digits", "--input-shape", SHAPE, *QUICK, "--out", str(out),
                 "--min-speedup", "0.01", "--max-drop", "100", "--json", str(report)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert out.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert "accepted: int8 vs float: meets" in printed and f"int8 model: {out}" in printed
    data = json.loads(report.read_text())
    assert data["accepted"] and data["verdict"]["outcome"] == "meets" and data["out"] == str(out)
    assert set(data["accuracy"]) == {"float", "int8"} and data["size_mb"]["int8"] < data["size_mb"]["float"]
    assert data["settings"]["method"] == "minmax" and data["calibration_s"] > 0


def test_a_rejected_quantization_leaves_the_float_model_and_says_why(tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code = main(["quantize", SPEC, "--data", "digits", "--input-shape", SHAPE, *QUICK, "--out", str(out),
                 "--min-speedup", "100"])
    printed = capsys.readouterr().out
    assert code == 1 and not out.exists()
    assert "rejected: int8 vs float: misses" in printed
    assert "the float model stays the result; nothing written" in printed


def test_an_accuracy_drop_over_the_limit_is_a_rejection(tmp_path, capsys):
    """An untrained model guesses, INT8 or not; with max_drop 0 any lost point rejects, and no drop accepts."""
    code = main(["quantize", SPEC, "--data", "digits", "--input-shape", SHAPE, *QUICK, "--out", str(tmp_path / "q.onnx"),
                 "--min-speedup", "0.01", "--max-drop", "0", "--json", str(tmp_path / "q.json")])
    data = json.loads((tmp_path / "q.json").read_text())
    drop = data["accuracy"]["float"] - data["accuracy"]["int8"]
    assert code == (1 if drop > 0 else 0)
    assert ("points below the float model's" in data["reason"]) == (drop > 0)


@pytest.fixture
def data_module(tmp_path, monkeypatch):
    """A user's data factory (typed on the command line: imported as the user's own code)."""
    (tmp_path / "user_data.py").write_text(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "def wrong_shape():\n"
        "    x = torch.zeros(8, 3, 16, 16)\n"
        "    return TensorDataset(x, torch.zeros(8, dtype=torch.long)), TensorDataset(x, torch.zeros(8, dtype=torch.long))\n"
        "def empty_train():\n"
        "    x = torch.zeros(8, 1, 16, 16)\n"
        "    y = torch.zeros(8, dtype=torch.long)\n"
        "    return TensorDataset(x[:0], y[:0]), TensorDataset(x, y)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_data"
    sys.modules.pop("user_data", None)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("wrong_shape", "the calibration data's samples have shape [3, 16, 16]; the model takes [1, 16, 16]"),
        ("empty_train", "the calibration data's train split is empty"),
    ],
)
def test_bad_calibration_data_is_one_line_and_exit_2(factory, message, data_module, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code = main(["quantize", SPEC, "--data", f"{data_module}:{factory}", "--input-shape", SHAPE, *QUICK,
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"spiral: error: {message}" and not out.exists()


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--calibration-batches", "0", "--calibration-batches: Input should be greater than or equal to 1"),
    ("--min-speedup", "0", "--min-speedup: Input should be greater than 0"),
])
def test_bad_settings_are_one_line(flag, value, message, capsys):
    assert main(["quantize", SPEC, "--data", "digits", "--input-shape", SHAPE, flag, value]) == 2
    assert capsys.readouterr().err.strip() == f"spiral: error: {message}"
