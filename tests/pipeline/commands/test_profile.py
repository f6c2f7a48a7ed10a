import argparse
import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spiralprune.core.errors import InputError
from spiralprune.pipeline.commands import profile as command

FAST = ["--warmup", "0.02", "--min-rounds", "5", "--max-duration", "0.3"]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """input [batch, 64] -> MatMul -> Relu -> output [batch, 10]."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["h"]), helper.make_node("Relu", ["h"], ["output"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [weight],
    )
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_prints_a_table_per_batch_and_writes_the_profile(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert command.run(parse([str(tiny_onnx), "--batch", "1,4", "--threads", "1", "--throughput", "--json", str(out), *FAST])) == 0
    text = capsys.readouterr().out
    assert "ort-cpu" in text and "items/s" in text and "p99 ms" in text
    saved = json.loads(out.read_text())
    assert [m["batch"] for m in saved["measurements"]] == [1, 4]
    assert saved["settings"]["throughput"] is True and saved["runner_settings"]["threads"] == 1


def test_bad_inputs_are_input_errors(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="bad.onnx"):
        command.run(parse([str(bad), *FAST]))
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        command.run(parse([str(tiny_onnx), "--backend", "nope", *FAST]))
    with pytest.raises(InputError, match="--threads must be positive"):
        command.run(parse([str(tiny_onnx), "--threads", "0", *FAST]))
    with pytest.raises(SystemExit):
        parse([str(tiny_onnx), "--batch", "1,x"])


def test_cli_exits_2_with_one_line_for_a_broken_model(tmp_path, capsys):
    from spiralprune.pipeline.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["profile", str(bad), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spiralprune: error:") and "bad.onnx" in err and "\n" not in err


TINY_SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"


def test_a_spec_is_exported_and_profiled_as_its_live_module_on_torch(tmp_path, capsys):
    """``--explain`` on a torch target: torch.profiler's layers, named by the spec's modules."""
    out = tmp_path / "p.json"
    assert command.run(parse([TINY_SPEC, "--backend", "torch", "--input-shape", "1,1,16,16", "--threads", "1",
                              "--explain", "--json", str(out), *FAST])) == 0
    saved = json.loads(out.read_text())
    assert saved["backend"] == "torch" and saved["runner_settings"]["device"] == "cpu"
    layers = saved["measurements"][0]["layers"]
    assert layers["source"] == "torch.profiler" and "layer4.0.conv2" in {r["name"] for r in layers["layers"]}
    text = capsys.readouterr().out
    assert "torch" in text and "where the time goes" in text


def test_torch_options_belong_to_the_torch_targets(tiny_onnx):
    with pytest.raises(InputError, match="target.device is for the torch targets; backend 'ort-cpu'"):
        command.run(parse([str(tiny_onnx), "--device", "cuda", *FAST]))
    with pytest.raises(InputError, match="runs the live torch module, which tiny.onnx does not hold"):
        command.run(parse([str(tiny_onnx), "--backend", "torch", *FAST]))


def test_explain_prints_where_the_time_goes_and_keeps_it_in_the_json(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert command.run(parse([str(tiny_onnx), "--threads", "1", "--explain", "--json", str(out), *FAST])) == 0
    text = capsys.readouterr().out
    assert "where the time goes" in text and "by operator type" in text and "of the end-to-end median" in text
    layers = json.loads(out.read_text())["measurements"][0]["layers"]
    assert layers["source"] == "onnxruntime" and {"MatMul", "Relu"} <= {r["op_type"] for r in layers["layers"]}
    explanation = layers["explanation"]
    assert explanation["coverage"]["value"] > 0 and explanation["findings"]


def test_explain_on_a_backend_without_a_layer_profile_is_an_input_error(tiny_onnx):
    with pytest.raises(InputError, match="per-layer profiles come from"):
        command.run(parse([str(tiny_onnx), "--backend", "ort-cuda", "--explain", *FAST]))


@pytest.fixture(scope="module")
def nms_onnx(tmp_path_factory):
    """input [1, 1, 8, 8] -> one box per pixel, scored by the pixel -> NonMaxSuppression (score threshold
    0.5) inside the graph: how many boxes it keeps, hence its work, depends on the pixels' values."""
    import torch
    import torchvision

    class Suppress(torch.nn.Module):
        def forward(self, x):
            scores = x[0, 0].flatten()
            cells = torch.arange(scores.numel(), dtype=torch.float32)
            ys, xs = torch.div(cells, 8, rounding_mode="floor"), cells % 8
            boxes = torch.stack([xs, ys, xs + 1.5, ys + 1.5], 1)
            keep = torchvision.ops.nms(boxes[scores > 0.5], scores[scores > 0.5], 0.3)
            return keep.float().sum().reshape(1, 1)

    path = tmp_path_factory.mktemp("models") / "nms.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(Suppress(), (torch.zeros(1, 1, 8, 8),), str(path), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)
    return path


def test_a_graph_whose_work_depends_on_its_data_is_fed_validation_samples(nms_onnx, tiny_onnx, tmp_path, capsys):
    """Random inputs time another workload than real ones where the graph's work depends on the data
    (a detector's in-graph NMS: random images leave it almost nothing to keep): with ``--data`` the
    profile is taken on validation samples, and the profile says which operators made it matter."""
    out = tmp_path / "p.json"
    assert command.run(parse([str(nms_onnx), "--threads", "1", "--json", str(out), *FAST])) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "inputs: seeded random; the graph's work depends on its inputs' values (" in printed
    assert "NonMaxSuppression" in printed and "random inputs time another workload than real ones, pass --data" in printed
    settings = json.loads(out.read_text())["settings"]
    assert settings["inputs"] == "random" and "NonMaxSuppression" in settings["data_dependent_ops"]
    assert command.run(parse([str(nms_onnx), "--threads", "1", "--data", "digits", "--json", str(out), *FAST])) == 0
    assert "inputs: validation samples" in capsys.readouterr().out
    assert json.loads(out.read_text())["settings"]["inputs"] == "given"
    # A graph whose work is its shapes' is measured on seeded random inputs, data or not.
    assert command.run(parse([str(tiny_onnx), "--threads", "1", "--json", str(out), *FAST])) == 0
    assert "inputs:" not in capsys.readouterr().out
    assert json.loads(out.read_text())["settings"] == {**json.loads(out.read_text())["settings"],
                                                       "inputs": "random", "data_dependent_ops": []}


def test_validation_samples_feed_a_model_of_one_input_only(nms_onnx, tmp_path):
    from spiralprune.pipeline.gate.prepare import data_feed

    two = onnx.load(str(nms_onnx))
    two.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1]))
    onnx.save(two, str(tmp_path / "two.onnx"))
    samples = [(np.zeros((1, 8, 8), np.float32), 0)]
    with pytest.raises(InputError, match=r"takes 2 inputs \(input, mask\); validation samples feed one"):
        data_feed(tmp_path / "two.onnx", samples)
