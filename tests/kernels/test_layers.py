from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import onnx_layers, torch_layers, untimed_layers
from spiralprune.kernels.ops import LSTM, Attention, Conv, Linear
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.zoo.lstm import lstm_classifier


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
    from spiralprune.pipeline.prune.attention import split_attention

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


@pytest.mark.parametrize("op", [Attention(1, 3, 7, 8, kv_len=5), LSTM(2, 7, 8, 4)], ids=["attention", "lstm"])
def test_onnx_finds_the_operator_of_its_own_graph(op: Attention | LSTM, tmp_path: Path) -> None:
    path = tmp_path / "op.onnx"
    onnx.save(op.graph(), str(path))
    assert [layer.op for layer in onnx_layers(path, batch=op.batch)] == [op]


def test_unreadable_onnx_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot read ONNX model"):
        onnx_layers(path)
    with pytest.raises(InputError, match="cannot read ONNX model"):
        onnx_layers(tmp_path / "missing.onnx")


def test_lstm_from_torch_and_onnx_is_the_same_operator(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, x = lstm_classifier(n_features=8, hidden=16, num_classes=4).eval(), torch.zeros(1, 10, 8)
    traced = torch_layers(model, x)
    path = export_onnx(model, x, tmp_path / "lstm.onnx")
    assert [layer.op for layer in traced] == [layer.op for layer in onnx_layers(path)]
    assert traced[0].name == "lstm" and traced[0].op == LSTM(1, 10, 8, 16)
    assert onnx_layers(path, batch=3)[0].op == LSTM(3, 10, 8, 16)


def test_lstm_shapes_follow_batch_first_and_unbatched_inputs() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence

    sequence_first = nn.LSTM(8, 4)
    assert torch_layers(sequence_first, torch.zeros(10, 3, 8))[0].op == LSTM(3, 10, 8, 4)
    assert torch_layers(sequence_first, torch.zeros(10, 8))[0].op == LSTM(1, 10, 8, 4)
    packed = pack_padded_sequence(torch.zeros(10, 3, 8), [10, 7, 2])
    assert torch_layers(sequence_first, packed)[0].op == LSTM(3, 10, 8, 4)


def test_onnx_bidirectional_lstm_is_a_clear_error(tmp_path: Path) -> None:
    class Bidirectional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 4, batch_first=True, bidirectional=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    path = export_onnx(Bidirectional(), torch.zeros(1, 5, 8), tmp_path / "bi.onnx")
    with pytest.raises(InputError, match="bidirectional"):
        onnx_layers(path)


def test_onnx_lstm_without_hidden_size_is_a_clear_error(tmp_path: Path) -> None:
    model = LSTM(1, 5, 8, 4).graph()
    del model.graph.node[0].attribute[:]
    path = tmp_path / "lstm.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="hidden_size"):
        onnx_layers(path)


def test_untimed_layers_names_heavy_layers_the_table_cannot_time() -> None:
    model = nn.ModuleDict({
        "timed": nn.ModuleList([nn.LSTM(8, 8), nn.Conv2d(3, 4, 3), nn.Linear(4, 4), nn.MultiheadAttention(8, 2)]),
        "cheap": nn.ModuleList([nn.BatchNorm2d(4), nn.LayerNorm(4), nn.ReLU(), nn.MaxPool2d(2), nn.Embedding(5, 4)]),
        "gru": nn.GRU(8, 8),
        "rnn": nn.RNN(8, 8),
        "stacked": nn.LSTM(8, 8, num_layers=2),
        "bidirectional": nn.LSTM(8, 8, bidirectional=True),
        "projected": nn.LSTM(8, 8, proj_size=4),
        "cell": nn.LSTMCell(8, 8),
        "conv1d": nn.Conv1d(3, 4, 3),
        "conv3d": nn.Conv3d(3, 4, 3),
        "deconv1d": nn.ConvTranspose1d(3, 4, 3),
        "deconv2d": nn.ConvTranspose2d(3, 4, 3),
        "deconv3d": nn.ConvTranspose3d(3, 4, 3),
    })
    assert untimed_layers(model) == [
        ("gru", "GRU"), ("rnn", "RNN"), ("stacked", "LSTM"), ("bidirectional", "LSTM"), ("projected", "LSTM"),
        ("cell", "LSTMCell"), ("conv1d", "Conv1d"), ("conv3d", "Conv3d"), ("deconv1d", "ConvTranspose1d"),
        ("deconv2d", "ConvTranspose2d"), ("deconv3d", "ConvTranspose3d"),
    ]
    assert untimed_layers(lstm_classifier()) == []


def test_only_single_layer_unidirectional_lstms_are_traced() -> None:
    class Stacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 4, num_layers=2, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(x)[0][:, -1])

    assert [layer.name for layer in torch_layers(Stacked(), torch.zeros(1, 5, 8))] == ["head"]
