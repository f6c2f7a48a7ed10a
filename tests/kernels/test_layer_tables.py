from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from spiralprune.kernels.ops import LSTM, Attention, Conv, Linear
from spiralprune.kernels.report import describe, print_layer_tables, staircase_counts
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.zoo.lstm import lstm_classifier


def test_staircase_counts_start_at_the_layer_and_step_down() -> None:
    assert staircase_counts(48) == [48, 40, 32, 24, 16, 8]
    assert staircase_counts(384) == [384, 336, 288, 240, 192, 144, 96, 48]
    assert staircase_counts(10) == [10, 8, 6, 4, 2]
    assert staircase_counts(1) == [1]


def test_describe_names_each_operator_kind() -> None:
    assert describe(Conv(1, 8, 8, 4, 4, groups=8)).startswith("dwconv 3x3/1 8→8")
    assert describe(Linear((1,), 4, 2)) == "linear 4→2 ×1"
    assert describe(Attention(1, 2, 3, 4)) == "attention 2 heads ×4 q3 kv3"
    assert describe(LSTM(1, 51, 40, 64)) == "lstm 40→64 ×51 steps b1"


def test_print_layer_tables_lists_every_layer(tmp_path: Path, table_dir: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 4)).eval()
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    console = Console(record=True, width=200)
    print_layer_tables(path, "ort-cpu", 1, cache_dir=table_dir, console=console)
    text = console.export_text()
    assert "conv 3x3/1 1→16 @8x8" in text and "linear 576→4 ×1" in text
    assert "12:" in text and "Σ operators" in text


def test_print_layer_tables_steps_lstm_hidden_units(tmp_path: Path, table_dir: Path) -> None:
    torch.manual_seed(0)
    model = lstm_classifier(n_features=8, hidden=16, num_classes=4)
    path = export_onnx(model, torch.zeros(1, 6, 8), tmp_path / "lstm.onnx")
    console = Console(record=True, width=200)
    print_layer_tables(path, "ort-cpu", 1, cache_dir=table_dir, console=console)
    text = console.export_text()
    assert "lstm 8→16 ×6 steps b1" in text and "12:" in text and "4:" in text
