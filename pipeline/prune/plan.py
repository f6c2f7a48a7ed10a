"""What one pruning step removes, as a JSON-serializable plan that replays exactly.

Plans are made by ``spiralprune.pipeline.prune.prunable`` (on a copy of the model, never the caller's) and
replayed by ``spiralprune.pipeline.prune.apply``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spiralprune.core.errors import InputError

PLAN_VERSION = 2  # 2 added ``blocks``; a version-1 plan removes none


@dataclass(frozen=True)
class PrunedGroup:
    """Channels removed from one coupled group.

    ``root``: the layer whose output channels define the group; ``members``: every layer whose output
    channels shrink with it; ``channels``: the root's channel count before removal; ``removed``: sorted
    root channel indices; ``unit``: channels removed together (``head_dim`` for attention heads, else 1).
    """

    root: str
    members: tuple[str, ...]
    channels: int
    removed: tuple[int, ...]
    unit: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "members": list(self.members),
            "channels": self.channels,
            "removed": list(self.removed),
            "unit": self.unit,
        }


@dataclass(frozen=True)
class PruningPlan:
    """What one pruning step removed: the criterion and ratio that chose it, the residual blocks
    removed whole (``spiralprune.pipeline.prune.blocks``; replaced by the identity before any channel
    goes) and the channels per group (groups of the model without those blocks)."""

    criterion: str
    ratio: float
    groups: tuple[PrunedGroup, ...]
    blocks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "criterion": self.criterion,
            "ratio": self.ratio,
            "groups": [group.to_dict() for group in self.groups],
            "blocks": list(self.blocks),
        }

    @classmethod
    def from_dict(cls, data: Any) -> PruningPlan:
        try:
            if data["version"] not in (1, PLAN_VERSION):
                raise InputError(f"pruning plan version {data['version']} is not supported (expected {PLAN_VERSION})")
            groups = tuple(
                PrunedGroup(
                    root=str(g["root"]),
                    members=tuple(str(m) for m in g["members"]),
                    channels=int(g["channels"]),
                    removed=tuple(int(i) for i in g["removed"]),
                    unit=int(g["unit"]),
                )
                for g in data["groups"]
            )
            blocks = tuple(str(b) for b in data.get("blocks", ()))
            return cls(criterion=str(data["criterion"]), ratio=float(data["ratio"]), groups=groups, blocks=blocks)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed pruning plan: {type(exc).__name__}: {exc}") from None


def original_channels(plans: list[PruningPlan]) -> dict[str, int]:
    """Channels per group root before the first of ``plans`` (the teacher's): a group keeps its root's
    name when pruned, and the first plan that cut it recorded how many it had."""
    original: dict[str, int] = {}
    for plan in plans:
        for group in plan.groups:
            original.setdefault(group.root, group.channels)
    return original


def example_input(shape: list[int], dtype: str = "float32") -> Tensor:
    """Zeros of ``shape``: all that tracing the dependency graph needs."""
    try:
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    except (AttributeError, TypeError, RuntimeError) as exc:
        raise InputError(f"cannot build an example input of shape {shape} and dtype {dtype}: {exc}") from None


def dtype_name(tensor: Tensor) -> str:
    """The dtype as ``example_input`` and a checkpoint's ``input_dtype`` name it: ``float32``, ``int64``."""
    return str(tensor.dtype).removeprefix("torch.")
