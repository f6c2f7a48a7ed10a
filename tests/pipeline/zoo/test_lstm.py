"""The zoo LSTM classifier: features over time in, logits out, exportable to ONNX and runnable in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from spiralprune.pipeline.zoo.lstm import lstm_classifier


def test_logits_shape_and_onnx_runtime_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = lstm_classifier(n_features=12, hidden=24, num_classes=5).eval()
    x = torch.randn(3, 20, 12)
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False, input_names=["x"])
    (onnx_out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 5)
    np.testing.assert_allclose(onnx_out, out.numpy(), rtol=1e-4, atol=1e-5)
