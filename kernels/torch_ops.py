"""The operators of ``spiralprune.kernels.ops`` as torch modules, for the tables of the torch targets.

``torch`` and ``torch-compile`` run a live ``nn.Module`` (no torch file format is safe to load), so
an operator is timed there as the module below, fed the inputs of the signature's ONNX graph (the
runner reads their names and shapes from it), with the signature's shapes and seeded weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spiralprune.kernels.ops import LSTM, Attention, Conv, Linear, OpSignature


class _Conv(nn.Module):
    def __init__(self, op: Conv) -> None:
        super().__init__()
        top, left, bottom, right = op.padding
        self.pad = (left, right, top, bottom)  # F.pad order: last dimension first
        self.conv = nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, 0, op.dilation, op.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad) if any(self.pad) else x)


class _Attention(nn.Module):
    def __init__(self, op: Attention) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(op.head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1) @ v


class _LSTM(nn.Module):
    def __init__(self, op: LSTM) -> None:
        super().__init__()
        self.lstm = nn.LSTM(op.input_size, op.hidden_size)  # sequence first, as the ONNX graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def torch_module(op: OpSignature | None) -> nn.Module:
    """``op`` as a module taking its graph's inputs; ``None`` is the empty graph (an identity)."""
    torch.manual_seed(0)
    if op is None:
        return nn.Identity()
    if isinstance(op, Conv):
        return _Conv(op)
    if isinstance(op, Linear):
        return nn.Linear(op.in_features, op.out_features, bias=op.bias)
    if isinstance(op, Attention):
        return _Attention(op)
    if isinstance(op, LSTM):
        return _LSTM(op)
    raise TypeError(f"no torch module for {type(op).__name__}")
