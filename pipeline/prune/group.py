"""The unit of structured pruning: one Torch-Pruning dependency group, named by its root layer.

Its own module so the criteria (which score groups) and the graph (which finds them) both depend on
it, and neither on the other. It also holds what the criterion modules share: the calibration batch
type and which items of a group shrink their module's output channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch_pruning as tp
from torch import Tensor

Batch = tuple[Tensor, Tensor]  # one calibration batch: inputs, labels


@dataclass(frozen=True)
class PrunableGroup:
    """A prunable group: ``group`` lists every channel of ``root``; ``unit`` channels go together."""

    group: tp.dependency.Group
    root: str
    members: tuple[str, ...]
    channels: int
    unit: int


def is_out(handler: Callable) -> bool:
    return getattr(handler, "__name__", "") == "prune_out_channels"
