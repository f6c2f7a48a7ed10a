"""A custom task's parts, named by spec in the tests: a regression loss, a lower-is-better metric, a small
regressor and its data (the mean brightness of random images)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.mse_loss(outputs.squeeze(-1), targets.float())


def mae(outputs: Tensor, targets: Tensor) -> float:
    return float((outputs.squeeze(-1) - targets.float()).abs().mean())


def not_scalar(outputs: Tensor, targets: Tensor) -> Tensor:
    return outputs


def regressor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))


def data() -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 16, 16, generator=generator)
    return TensorDataset(images[:64], images[:64].mean((1, 2, 3))), TensorDataset(images[64:], images[64:].mean((1, 2, 3)))
