"""Channel pruning through torchvision's ``FrozenBatchNorm2d``.

torchvision's detection backbones (``resnet_fpn_backbone``, ``mobilenet_backbone``, and every detector built
with pretrained weights: Faster R-CNN, RetinaNet, FCOS) normalise with ``FrozenBatchNorm2d``: a batch norm
whose scale, shift and statistics are buffers. Torch-Pruning 1.6 has no pruner for it, so a detector a team
fine-tuned from torchvision's weights could not be pruned at all; this one is registered for it. Like a
batch norm, its input and output channels are one (``prune_in_channels`` is ``prune_out_channels``, which
is how Torch-Pruning couples them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc
from torchvision.ops.misc import FrozenBatchNorm2d

BUFFERS = ("weight", "bias", "running_mean", "running_var")


class FrozenBatchNormPruner(BasePruningFunc):
    TARGET_MODULES = FrozenBatchNorm2d

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        removed = set(idxs)
        keep = torch.tensor([i for i in range(self.get_out_channels(layer)) if i not in removed], dtype=torch.long)
        for name in BUFFERS:
            buffer = getattr(layer, name)
            setattr(layer, name, buffer.index_select(0, keep.to(buffer.device)))
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[0]

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[0]
