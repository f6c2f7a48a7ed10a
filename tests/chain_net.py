"""A chain of ten layers (nine 3x3 convolutions and a linear head) whose last convolution can be made wider.

Widening the last convolution changes that layer's cost alone: the layer after it is global average
pooling and a linear head, whose cost hardly moves. (Widening one in the middle would widen the
input of the next convolution too, and make two layers change.) Used by the layer-attribution
tests and ``benchmarks/attribution_check.py``.
"""

from __future__ import annotations

from torch import nn

CONVS = 9


def chain_net(width: int = 16, *, wide: int = 1, in_channels: int = 3, num_classes: int = 10) -> nn.Sequential:
    """Nine convolutions of ``width`` channels, the last one ``wide`` times wider, then pool and a linear head."""
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(CONVS):
        out = width * wide if i == CONVS - 1 else width
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)).eval()


WIDENED = str(2 * (CONVS - 1))  # the module name of the last convolution in the Sequential
