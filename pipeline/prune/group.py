"""The unit of structured pruning: one Torch-Pruning dependency group, named by its root layer.

Its own module so the criteria (which score groups) and the graph (which finds them) both depend on
it, and neither on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch_pruning as tp


@dataclass(frozen=True)
class PrunableGroup:
    """A prunable group: ``group`` lists every channel of ``root``; ``unit`` channels go together."""

    group: tp.dependency.Group
    root: str
    members: tuple[str, ...]
    channels: int
    unit: int
