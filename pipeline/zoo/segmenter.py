"""torchvision's LR-ASPP segmenter (MobileNetV3-Large backbone, no downloaded weights) for grey images."""

from __future__ import annotations

from torch import nn


def lraspp_grey(num_classes: int = 11, in_channels: int = 1) -> nn.Module:
    """``lraspp_mobilenet_v3_large`` with its stem taking ``in_channels``; returns ``{"out": [B, classes, H, W]}``."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    stem = model.backbone["0"][0]
    model.backbone["0"][0] = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                                       bias=False)
    return model


def tiny_segmenter(num_classes: int = 11, in_channels: int = 1, width: int = 8) -> nn.Module:
    """An encoder-decoder of a few convolutions (stride 4 and back): the tests' segmenter."""
    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(block(in_channels, width, 2), block(width, 2 * width, 2), block(2 * width, 2 * width, 1),
                         nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False),
                         nn.Conv2d(2 * width, num_classes, 1))
