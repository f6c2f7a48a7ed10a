"""TensorRT's per-layer profiles named by module: trtexec's ``--exportProfile`` and ``--exportLayerInfo`` files
(tests/fixtures/trtexec/README.md says where each comes from) and the layer names the IProfiler reports."""

import json
from pathlib import Path

import onnx
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import LayerProfile, explain
from spiralprune.deploy.tensorrt_layers import parse_layer_info, parse_trtexec_profile, tensorrt_layer, tensorrt_profile

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trtexec"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_export_profile_of_a_real_one_layer_engine():
    layers = parse_trtexec_profile(read("cbr-export-profile.json"))
    assert layers.source == "trtexec" and layers.calls_per_round == [41400]
    (layer,) = layers.layers
    assert layer.name == "conv1" and layer.fuses == ["conv1", "act1"] and layer.fused
    assert layer.op_type == "Conv" and layer.kind == "arithmetic" and layer.rounds_ms == [0.0280382]


def test_export_profile_maps_fused_layers_to_their_modules():
    """A file written here in trtexec's format (see tests/fixtures/trtexec/README.md)."""
    layers = parse_trtexec_profile(read("resnet-export-profile.json")).by_name()
    assert layers["layer1.0.conv2"].fuses == ["layer1.0.conv2", "layer1.0", "layer1.0.relu_1"]
    assert layers["layer3.1.conv2"].rounds_ms == [0.36] and not layers["layer3.1.conv2"].fused
    assert layers["layer3.1"].op_type == "Add" and layers["layer3.1"].fuses == ["layer3.1", "layer3.1.relu_1"]
    reformat = next(layer for name, layer in layers.items() if name.startswith("Reformatting"))
    assert reformat.kind == "layout" and reformat.op_type == "Reformat"
    assert layers["fc"].op_type == "Gemm"


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"count": 3}', "not a list starting with"),
    ('[{"count": 3}, {"name": "x"}]', "without name or averageMs"),
    ('[{"count": 3}, {"name": "x", "averageMs": -1}]', "bad name or time"),
    ('[{"count": 0}, {"name": "x", "averageMs": 1}]', "counts 0 profiled"),
])
def test_malformed_export_profiles_are_input_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_trtexec_profile(text)


def test_layer_info_names_every_onnx_node_of_a_fused_layer_and_of_a_myelin_region():
    """Each ONNX node the layer information names is a node of the model it was derived from."""
    engine = parse_layer_info(read("resnetlike-layer-info.json"))
    onnx_nodes = {node.name for node in onnx.load(str(FIXTURES / "resnetlike.onnx")).graph.node}
    named = {node for layer in engine.values() for node in layer.onnx_nodes}
    assert named and named <= onnx_nodes
    foreign = engine["{ForeignNode[/pool/GlobalAveragePool.../fc/Gemm]}"]
    assert foreign.layer_type == "Myelin" and foreign.onnx_nodes == ("/pool/GlobalAveragePool", "/Flatten", "/fc/Gemm")


def test_a_profile_with_layer_info_maps_fused_layers_myelin_regions_and_reformats():
    profile = parse_trtexec_profile(read("resnetlike-export-profile.json"), read("resnetlike-layer-info.json"))
    layers = profile.by_name()
    assert profile.calls_per_round == [2712]
    block = layers["layer1.0.conv2"]
    assert block.fuses == ["layer1.0.conv2", "layer1.0"] and block.fused and block.kind == "arithmetic"
    assert layers["stem.0"].fuses == ["stem.0", "stem.2"] and layers["stem.0"].rounds_ms == [0.0164]
    # a convolution's MACs from its record: output elements x weights per output channel (16 x 16 x 3 x 3)
    assert block.macs == 16 * 32 * 32 * 16 * 9 and layers["stem.0"].macs == 16 * 32 * 32 * 3 * 9
    assert layers["fc"].macs is None  # a myelin region's record says nothing to count them by
    # the myelin region is named after its arithmetic node, and fuses every module the layer information lists
    assert layers["fc"].op_type == "Gemm" and layers["fc"].fuses == ["pool", "fc"] and layers["fc"].fused
    reformats = [layer for layer in profile.layers if layer.op_type == "Reformat"]
    assert len(reformats) == 2 and {layer.kind for layer in reformats} == {"layout"}
    assert all(not layer.fuses and layer.fused for layer in reformats)


def test_without_layer_info_a_myelin_region_is_known_by_its_ends():
    layer = tensorrt_layer("{ForeignNode[/blocks/blocks.0/attn/Split.../blocks/blocks.0/Add]}", [0.5])
    assert layer.op_type == "ForeignNode" and layer.fuses == ["blocks.0.attn", "blocks.0"] and layer.fused
    assert layer.kind == "other"


def test_layer_info_of_an_engine_built_with_layer_names_only():
    engine = parse_layer_info(json.dumps({"Layers": ["/conv1/Conv + /act1/Relu"], "Bindings": ["x", "y"]}))
    assert engine["/conv1/Conv + /act1/Relu"].onnx_nodes == ()
    assert tensorrt_layer("/conv1/Conv + /act1/Relu", [1.0], engine).fuses == ["conv1", "act1"]


def test_layers_of_an_engine_built_without_layer_names_are_their_indices():
    """Profiling verbosity NONE: the IProfiler reports each layer by its decimal index."""
    layer = tensorrt_layer("7", [0.1])
    assert layer.name == "7" and layer.fused and not layer.fuses and layer.kind == "other"
    assert tensorrt_layer("", [0.1]).name == ""


def test_unscoped_names_of_older_exporters_keep_tensorrts_name():
    """``Conv_0 + Relu_1`` (trt-engine-explorer's ResNet example, exported without module scopes)."""
    layer = tensorrt_layer("Conv_0 + Relu_1", [0.52224])
    assert layer.name == "Conv_0 + Relu_1" and layer.op_type == "Conv" and layer.fused and not layer.fuses


def test_engine_layers_named_after_one_module_are_one_layer():
    profile = tensorrt_profile("tensorrt IProfiler", [2, 2], {
        "/fc/MatMul": [0.1, 0.2], "PWN(/fc/Add)": [0.05, 0.05], "/conv/Conv": [0.3, 0.3]})
    fc = profile.by_name()["fc"]
    assert fc.rounds_ms == pytest.approx([0.15, 0.25]) and fc.op_type == "MatMul" and fc.fused


def test_explain_reads_a_trtexec_profile_against_the_median_of_the_judged_rounds():
    """trtexec's profile is one round (its own run); its layers stand beside the median end-to-end round."""
    profile = parse_trtexec_profile(read("resnetlike-export-profile.json"), read("resnetlike-layer-info.json"))
    total = sum(layer.rounds_ms[0] for layer in profile.layers)
    result = explain(LayerProfile.from_dict(profile.to_dict()), [total * 0.9, total, total * 1.1, total * 5])
    assert result["rounds"] == 1 and result["end_to_end_ms"] == pytest.approx(total * 1.05)
    assert result["coverage"]["value"] == pytest.approx(1 / 1.05)
    assert result["kinds"]["layout"] == pytest.approx(0.0061 / (total * 1.05))
    assert result["layers"][0]["name"] == "layer1.0.conv2"
    assert result["regime"]["correlation"] is not None  # the convolutions' MACs come from the layer information


@pytest.mark.parametrize("text, message", [
    ("[", "not JSON"), ('{"Layers": 3}', 'no "Layers" list'), ('{"Layers": [7]}', "neither a name nor a record"),
])
def test_malformed_layer_information_is_an_input_error(text, message):
    with pytest.raises(InputError, match=message):
        parse_layer_info(text)


def test_a_profile_of_layers_that_took_no_time_has_nan_percentages():
    """``exportJSONProfile`` divides by the total time: 0 / 0 streams as ``-nan`` (C++), not JSON."""
    text = '[\n  { "count" : 10 }\n, { "name" : "/a/Conv", "timeMs" : 0, "averageMs" : 0, "percentage" : -nan }\n]\n'
    (layer,) = parse_trtexec_profile(text).layers
    assert layer.name == "a" and layer.rounds_ms == [0.0]


def test_reformat_copies_are_called_layout_conversions_in_the_findings():
    profile = tensorrt_profile("tensorrt IProfiler", [3, 3], {
        "Reformatting CopyNode for Input Tensor 0 to /conv/Conv": [0.2, 0.2],
        "/conv/Conv + /relu/Relu": [0.7, 0.7], "{ForeignNode[/fc/MatMul.../fc/Add]}": [0.1, 0.1]})
    result = explain(profile, [1.0, 1.0])
    assert result["kinds"]["layout"] == pytest.approx(0.2) and result["coverage"]["value"] == pytest.approx(1.0)
    # no layer information: the convolutions' MACs are unknown, and time vs MACs is not judged
    assert result["regime"]["dominant"] == "unknown"
    assert result["findings"][0].startswith("the arithmetic layers' MACs are unknown (tensorrt IProfiler)")
    assert "memory and layout conversions take 20% (Reformat)" in result["findings"]
    assert [r["op_type"] for r in result["op_types"]] == ["Conv", "Reformat", "MatMul"]


def test_which_layers_of_a_real_int8_engine_ran_quantized():
    """NVIDIA's QAT ResNet-18 engine (A100; layer information and profile from trt-engine-explorer's examples,
    tests/fixtures/trtexec/README.md): every convolution and the classifier compute in INT8 (their weights'
    ``Type``), and the explanation lists them; an FP32 engine's layers are fp32."""
    layers = parse_trtexec_profile(read("resnet18-qat-int8-export-profile.json"), read("resnet18-qat-int8-layer-info.json"))
    arithmetic = [layer for layer in layers.layers if layer.kind == "arithmetic"]
    assert len(arithmetic) == 21 and {layer.precision for layer in arithmetic} == {"int8"}
    int8 = explain(layers, [0.7])["int8"]
    assert len(int8["quantized"]) == 21 and int8["float"] == []
    assert {layer.precision for layer in parse_layer_info(read("resnet18-fp32-layer-info.json")).values()} == {"fp32"}


def test_a_layer_left_in_float_in_an_int8_engine_is_named():
    """The same engine with one convolution's weights and tensors in FP32, as a float fallback leaves it."""
    info = json.loads(read("resnet18-qat-int8-layer-info.json"))
    kept = next(layer for layer in info["Layers"] if layer["Name"].startswith("layer4.1.conv2.weight"))
    kept["Weights"]["Type"] = "Float"
    for tensor in kept["Inputs"] + kept["Outputs"]:
        tensor["Format/Datatype"] = "Row major linear FP32"
    layers = parse_trtexec_profile(read("resnet18-qat-int8-export-profile.json"), json.dumps(info))
    result = explain(layers, [0.7])
    assert result["int8"]["float"] == [kept["Name"]] and len(result["int8"]["quantized"]) == 20
    assert any(line.startswith("INT8: 20 arithmetic layers run quantized, 1 stayed float: layer4.1.conv2.weight")
               for line in result["findings"])
    # a layer profile written before layers had a precision reads as one that says none
    record = layers.to_dict()
    for layer in record["layers"]:
        del layer["precision"]
    assert {layer.precision for layer in LayerProfile.from_dict(record).layers} == {None}
