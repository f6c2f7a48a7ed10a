"""A tiny digits-shaped classifier: input [batch, 1, 16, 16], 10 logits, 2,650 weights."""

from __future__ import annotations

import torch
from torch import nn


def digits_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


def eight_pixel_digits() -> tuple:
    """A data factory whose samples are 8x8: the wrong shape for ``digits_net``'s 16x16 export."""
    from torch.utils.data import TensorDataset

    images, labels = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    return TensorDataset(images, labels), TensorDataset(images, labels)
