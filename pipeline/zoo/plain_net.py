"""A plain VGG-style network for small images: stages of 3x3 convolutions, no residual connection.

With nothing to remove whole, every millisecond a step saves comes from channels: the case where
layer-wise pruning cannot help (``benchmarks/quality_frontier.py``'s ``vgg``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def plain_net(
    width: int = 32, convs: Sequence[int] = (2, 2, 2), num_classes: int = 10, in_channels: int = 1
) -> nn.Module:
    """``convs[i]`` conv-BN-ReLU layers of ``width * 2**i`` channels per stage, each stage after the first
    halving the resolution with a max pool; global average pooling and a linear classifier."""
    if not convs or any(count < 1 for count in convs):
        raise ValueError("plain_net needs at least one stage, each of at least one convolution")
    layers: list[nn.Module] = []
    channels = in_channels
    for index, count in enumerate(convs):
        if index:
            layers.append(nn.MaxPool2d(2))
        for _ in range(count):
            out_channels = width * 2**index
            layers += [nn.Conv2d(channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                       nn.ReLU(inplace=True)]
            channels = out_channels
    return _PlainNet(nn.Sequential(*layers), nn.Linear(channels, num_classes))


class _PlainNet(nn.Module):
    def __init__(self, features: nn.Sequential, fc: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))
