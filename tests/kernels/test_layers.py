from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from deploy.errors import InputError
from kernels.layers import onnx_layers, torch_layers
from kernels.ops import Attention, Conv, Linear
from pipeline.export import export_onnx


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding="same", groups=8),
        nn.Conv2d(8, 12, 1),
        nn.Conv2d(12, 12, (3, 1), padding="valid", dilation=(2, 1), groups=4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).eval()


def test_torch_and_onnx_give_the_same_operators(tmp_path: Path) -> None:
    model, x = small_cnn(), torch.zeros(1, 3, 16, 16)
    traced = torch_layers(model, x)
    exported = onnx_layers(export_onnx(model, x, tmp_path / "cnn.onnx"))
    assert [layer.op for layer in traced] == [layer.op for layer in exported]
    assert [layer.name for layer in traced] == ["0", "3", "4", "5", "8"]
    assert traced[1].op.depthwise and traced[3].op.groups == 4 and traced[3].op.padding == (0, 0, 0, 0)
    assert traced[-1].op == Linear((1,), 12, 5, bias=True)


def test_onnx_batch_replaces_the_dynamic_axis(tmp_path: Path) -> None:
    model, x = small_cnn(), torch.zeros(1, 3, 16, 16)
    path = export_onnx(model, x, tmp_path / "cnn.onnx")
    assert {layer.op.batch for layer in onnx_layers(path, batch=4) if isinstance(layer.op, Conv)} == {4}


def test_torch_layers_leaves_training_modes_as_they_were() -> None:
    model = small_cnn().train()
    model[1].eval()
    torch_layers(model, torch.zeros(1, 3, 16, 16))
    assert model.training and not model[1].training


def test_multihead_attention_gives_projections_and_core() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    ops = {l.name: l.op for l in torch_layers(model, torch.zeros(2, 10, 32))}
    assert ops["layers.0.self_attn.in_proj"] == Linear((2, 10), 32, 96, bias=True)
    assert ops["layers.0.self_attn"] == Attention(2, 4, 10, 8)
    assert ops["layers.0.self_attn.out_proj"] == Linear((2, 10), 32, 32, bias=True)
    assert ops["layers.0.linear1"] == Linear((2, 10), 32, 64, bias=True)


def test_head_split_attention_gives_its_core_and_its_linear_children() -> None:
    from pipeline.prune.attention import split_attention

    model = split_attention(nn.Sequential(nn.MultiheadAttention(16, 2, batch_first=True)))

    class Self(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = model[0]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x)[0]

    ops = {l.name: l.op for l in torch_layers(Self(), torch.zeros(1, 6, 16))}
    assert ops["attn"] == Attention(1, 2, 6, 8)
    assert {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"} <= set(ops)


def test_onnx_attention_core_is_found(tmp_path: Path) -> None:
    op = Attention(1, 3, 7, 8, kv_len=5)
    path = tmp_path / "attention.onnx"
    onnx.save(op.graph(), str(path))
    assert [layer.op for layer in onnx_layers(path)] == [op]


def test_unreadable_onnx_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot read ONNX model"):
        onnx_layers(path)
    with pytest.raises(InputError, match="cannot read ONNX model"):
        onnx_layers(tmp_path / "missing.onnx")
