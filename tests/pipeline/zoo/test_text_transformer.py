"""The zoo text classifier: token ids in, logits out, exportable to ONNX and runnable in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from spiralprune.pipeline.zoo.text_transformer import text_transformer


def test_logits_shape_and_onnx_runtime_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_transformer(vocab_size=200, seq_len=32, d_model=32, nhead=4, dim_feedforward=64).eval()
    tokens = torch.randint(0, 200, (3, 32))
    path = tmp_path / "text.onnx"
    # With grad enabled PyTorch keeps its fused (non-exportable) attention kernel out of the trace.
    torch.onnx.export(model, (tokens,), str(path), opset_version=17, dynamo=False, input_names=["tokens"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        out = model(tokens)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(onnx_out, out.numpy(), rtol=1e-4, atol=1e-5)


def test_shorter_sequences_use_the_first_positions() -> None:
    model = text_transformer(vocab_size=50, seq_len=16, d_model=16, nhead=2, dim_feedforward=32).eval()
    with torch.no_grad():
        assert model(torch.randint(0, 50, (2, 5))).shape == (2, 4)
