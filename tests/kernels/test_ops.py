from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from spiralprune.deploy.backends import get_backend
from spiralprune.deploy.backends.inputs import example_feed
from spiralprune.kernels.ops import (
    LSTM,
    OP_KINDS,
    Attention,
    Conv,
    Linear,
    OpSignature,
    empty_graph,
)
from spiralprune.pipeline.export import export_onnx

EXAMPLES: dict[str, OpSignature] = {
    "conv": Conv(1, 6, 10, 9, 11, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 1),
    "depthwise": Conv(1, 12, 12, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1), groups=12),
    "grouped-dilated": Conv(2, 8, 16, 12, 12, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), groups=4),
    "gemm": Linear((3,), 20, 7, bias=True),
    "matmul": Linear((2, 5), 16, 24, bias=False),
    "matmul-bias": Linear((2, 5), 16, 24, bias=True),
    "attention": Attention(2, 4, 6, 8),
    "cross-attention": Attention(1, 2, 5, 4, kv_len=9),
    "lstm": LSTM(2, 7, 6, 5),
}


def test_every_kind_has_an_example() -> None:
    assert {op.kind for op in EXAMPLES.values()} == set(OP_KINDS)


def _reference(op: OpSignature, model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    t = {k: torch.from_numpy(v) for k, v in feed.items()}
    if isinstance(op, Conv):
        x = F.pad(t["x"], (op.padding[1], op.padding[3], op.padding[0], op.padding[2]))
        return F.conv2d(x, w["w"], w["b"], op.stride, 0, op.dilation, op.groups).numpy()
    if isinstance(op, Linear):
        weight = w["w"] if len(op.leading) == 1 else w["w"].T
        return F.linear(t["x"], weight, w.get("b")).numpy()
    if isinstance(op, LSTM):
        return _torch_lstm(op, w, t["x"])
    scores = t["q"] @ t["k"].transpose(-1, -2) / np.sqrt(op.head_dim)
    return (scores.softmax(-1) @ t["v"]).numpy()


def _torch_lstm(op: LSTM, w: dict[str, torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """``nn.LSTM`` with the graph's weights: ONNX orders the gates i, o, f, c and torch i, f, c, o."""
    def torch_gates(t: torch.Tensor) -> torch.Tensor:
        i, o, f, c = t.chunk(4)
        return torch.cat([i, f, c, o])

    lstm = torch.nn.LSTM(op.input_size, op.hidden_size)
    bias_ih, bias_hh = w["b"][0].chunk(2)
    with torch.no_grad():
        for name, value in [("weight_ih_l0", w["w"][0]), ("weight_hh_l0", w["r"][0]), ("bias_ih_l0", bias_ih),
                            ("bias_hh_l0", bias_hh)]:
            getattr(lstm, name).copy_(torch_gates(value))
        return lstm(x)[0].unsqueeze(1).numpy()  # ONNX's Y: [steps, directions, batch, hidden]


@pytest.mark.parametrize("name", EXAMPLES)
def test_graph_is_valid_onnx_and_computes_the_operator(name: str, tmp_path: Path) -> None:
    op = EXAMPLES[name]
    model = op.graph()
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "op.onnx"
    onnx.save(model, str(path))
    with get_backend("ort-cpu")(path, threads=1).load() as runner:
        feed = example_feed(runner.input_metadata())
        (output,) = runner.infer(feed).values()
    np.testing.assert_allclose(output, _reference(op, model, feed), rtol=1e-4, atol=1e-5)


def test_empty_graph_runs(tmp_path: Path) -> None:
    onnx.checker.check_model(empty_graph(), full_check=True)
    path = tmp_path / "empty.onnx"
    onnx.save(empty_graph(), str(path))
    with get_backend("ort-cpu")(path, threads=1).load() as runner:
        assert runner.infer({"x": np.ones(1, np.float32)}) == {"y": np.ones(1, np.float32)}


@pytest.mark.parametrize("name", EXAMPLES)
def test_keys_name_every_field(name: str) -> None:
    op = EXAMPLES[name]
    step = op.groups if isinstance(op, Conv) and not op.depthwise else 1
    smaller = op.resized(out_channels=op.out_channels - step)
    assert smaller.key() != op.key()
    assert smaller.macs() < op.macs()


def test_resized_depthwise_stays_depthwise() -> None:
    dw = EXAMPLES["depthwise"]
    for smaller in (dw.resized(out_channels=5), dw.resized(in_channels=5), dw.resized(in_channels=5, out_channels=5)):
        assert (smaller.in_channels, smaller.out_channels, smaller.groups) == (5, 5, 5)


def test_resized_changes_only_the_given_side() -> None:
    conv = EXAMPLES["conv"]
    assert conv.resized(in_channels=3) == Conv(1, 3, 10, 9, 11, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 1)
    assert conv.resized(out_channels=4).in_channels == 6
    assert EXAMPLES["attention"].resized(in_channels=3).heads == 3
    assert EXAMPLES["lstm"].resized(in_channels=4) == LSTM(2, 7, 4, 5)
    assert EXAMPLES["lstm"].resized(out_channels=3) == LSTM(2, 7, 6, 3)


def test_lstm_macs_count_every_gate_of_every_step() -> None:
    assert LSTM(2, 7, 6, 5).macs() == 7 * 2 * 4 * 5 * (6 + 5)


def test_lstm_graph_is_the_node_torch_exports(tmp_path: Path) -> None:
    """Same weight shapes, hidden size and output ``Y`` as torch's export of ``nn.LSTM`` (batch first, 3 steps)."""
    path = export_onnx(torch.nn.LSTM(6, 5, batch_first=True), torch.zeros(2, 3, 6), tmp_path / "lstm.onnx")
    exported = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    ours = LSTM(2, 3, 6, 5).graph().graph
    (theirs,) = [n for n in exported.node if n.op_type == "LSTM"]
    (node,) = ours.node

    def dims(graph: onnx.GraphProto, name: str) -> list[int | str]:
        values = [*graph.initializer, *graph.value_info, *graph.output]
        found = next(v for v in values if v.name == name)
        if isinstance(found, onnx.TensorProto):
            return list(found.dims)
        return [d.dim_value or d.dim_param for d in found.type.tensor_type.shape.dim]

    for i in (1, 2, 3):  # W, R, B
        assert dims(exported, theirs.input[i]) == dims(ours, node.input[i])
    assert dims(exported, theirs.output[0]) == [3, 1, "batch", 5] and dims(ours, node.output[0]) == [3, 1, 2, 5]
    hidden = [onnx.helper.get_node_attr_value(n, "hidden_size") for n in (theirs, node)]
    assert hidden == [5, 5]


def test_conv_output_size_matches_torch() -> None:
    op = EXAMPLES["grouped-dilated"]
    out = F.conv2d(torch.zeros(2, 8, 12, 12), torch.zeros(16, 2, 3, 3), padding=2, dilation=2, groups=4)
    assert op.output_hw == tuple(out.shape[2:])


def test_invalid_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        Conv(1, 6, 10, 8, 8, groups=4)
    with pytest.raises(ValueError):
        Linear((), 4, 4)
    with pytest.raises(ValueError):
        Attention(1, 0, 4, 4)
    with pytest.raises(ValueError):
        LSTM(1, 5, 4, 0)
