from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from kernels.ops import Attention, Conv, Linear
from kernels.report import describe, print_layer_tables, staircase_counts
from pipeline.export import export_onnx


def test_staircase_counts_start_at_the_layer_and_step_down() -> None:
    assert staircase_counts(48) == [48, 40, 32, 24, 16, 8]
    assert staircase_counts(384) == [384, 336, 288, 240, 192, 144, 96, 48]
    assert staircase_counts(10) == [10, 8, 6, 4, 2]
    assert staircase_counts(1) == [1]


def test_describe_names_each_operator_kind() -> None:
    assert describe(Conv(1, 8, 8, 4, 4, groups=8)).startswith("dwconv 3x3/1 8→8")
    assert describe(Linear((1,), 4, 2)) == "linear 4→2 ×1"
    assert describe(Attention(1, 2, 3, 4)) == "attention 2 heads ×4 q3 kv3"


def test_print_layer_tables_lists_every_layer(tmp_path: Path, table_dir: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 4)).eval()
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    console = Console(record=True, width=200)
    print_layer_tables(path, "ort-cpu", 1, cache_dir=table_dir, console=console)
    text = console.export_text()
    assert "conv 3x3/1 1→16 @8x8" in text and "linear 576→4 ×1" in text
    assert "12:" in text and "Σ operators" in text
