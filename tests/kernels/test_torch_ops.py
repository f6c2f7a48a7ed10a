"""The operators as torch modules: the same computation as their ONNX graphs, timed on the torch targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from spiralprune.deploy.backends import BACKENDS
from spiralprune.deploy.backends.inputs import example_feed
from spiralprune.deploy.backends.onnx_io import read_onnx_io
from spiralprune.kernels.ops import LSTM, OP_KINDS, Attention, Conv, Linear
from spiralprune.kernels.table import CALL_OVERHEAD_KEY, LatencyTable
from spiralprune.kernels.torch_ops import torch_module

EXAMPLES = {
    "conv": Conv(1, 4, 8, 9, 7, padding=(1, 0, 2, 1), stride=(2, 1)),
    "linear": Linear((2, 5), 12, 6),
    "attention": Attention(1, 2, 5, 4, kv_len=3),
    "lstm": LSTM(2, 4, 3, 5),
}
TORCH_TARGETS = [name for name, cls in BACKENDS.items() if "module" in cls.option_names and cls.availability()[0]]


def test_every_operator_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(OP_KINDS)


@pytest.mark.parametrize("kind", sorted(OP_KINDS))
def test_the_module_computes_what_the_graph_computes_in_shape(kind: str, tmp_path: Path) -> None:
    """Same inputs, same output size (weights are each side's own seeded ones: only the work matters)."""
    op = EXAMPLES[kind]
    path = tmp_path / "op.onnx"
    path.write_bytes(op.graph().SerializeToString())
    inputs, _ = read_onnx_io(path)
    feed = example_feed(inputs)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    with torch.inference_mode():
        got = torch_module(op)(*(torch.from_numpy(feed[name]) for name in inputs))
    assert got.numel() == expected.size and got.dtype == torch.float32
    assert got.shape[-1] == expected.shape[-1]


def test_conv_module_pads_as_the_onnx_graph(tmp_path: Path) -> None:
    """With the graph's own weights the module's output equals ONNX Runtime's (asymmetric pads)."""
    op = EXAMPLES["conv"]
    graph = op.graph()
    weights = {init.name: np.frombuffer(init.raw_data, np.float32).reshape(init.dims) for init in graph.graph.initializer}
    module = torch_module(op)
    module.conv.weight.data = torch.from_numpy(weights["w"].copy())
    module.conv.bias.data = torch.from_numpy(weights["b"].copy())
    x = np.random.default_rng(0).standard_normal((1, 4, 9, 7)).astype(np.float32)
    path = tmp_path / "conv.onnx"
    path.write_bytes(graph.SerializeToString())
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", TORCH_TARGETS)
def test_a_torch_target_times_operators_as_modules(backend: str, tmp_path: Path) -> None:
    table = LatencyTable(backend, threads=1, cache_dir=tmp_path, options={"device": "cpu"})
    assert table.live_module and table.fingerprint["options"] == {"device": "cpu"}
    assert "torch" in table.fingerprint["libraries"]
    small, large = table.latencies([Conv(1, 8, 8, 16, 16, padding=(1, 1, 1, 1)), Conv(1, 64, 64, 16, 16, padding=(1, 1, 1, 1))])
    assert 0 <= small < large
    saved = json.loads(table.path.read_text())
    assert CALL_OVERHEAD_KEY in saved["entries"] and saved["fingerprint"]["backend"] == backend
    assert LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path).path != table.path
