"""Decide what one pruning step removes, as a JSON-serializable plan that replays exactly.

Planning never touches the caller's model: it works on a copy (attention split into q/k/v
projections, see ``pipeline.prune.attention``), traces Torch-Pruning's dependency graph, scores
every candidate group with the criterion and lets the policy pick channel indices per group.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deploy.errors import InputError
from pipeline.prune.attention import split_attention
from pipeline.prune.config import PruneConfig
from pipeline.prune.criteria import calibration_batches, get_criterion
from pipeline.prune.graph import build_graph, candidate_groups, check_supported
from pipeline.prune.policy import choose_removals

PLAN_VERSION = 1


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
    """What one pruning step removed: the criterion and ratio that chose it, and the channels per group."""

    criterion: str
    ratio: float
    groups: tuple[PrunedGroup, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "criterion": self.criterion,
            "ratio": self.ratio,
            "groups": [group.to_dict() for group in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Any) -> PruningPlan:
        try:
            if data["version"] != PLAN_VERSION:
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
            return cls(criterion=str(data["criterion"]), ratio=float(data["ratio"]), groups=groups)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed pruning plan: {type(exc).__name__}: {exc}") from None


def plan_pruning(
    model: nn.Module,
    example_inputs: Tensor,
    cfg: PruneConfig,
    *,
    calibration: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> PruningPlan:
    """Score ``model``'s channel groups with ``cfg.criterion`` and choose the channels to remove."""
    criterion = get_criterion(cfg.criterion)
    batches = calibration_batches(cfg.criterion, calibration)
    work = split_attention(copy.deepcopy(model))
    check_supported(work)
    graph = build_graph(work, example_inputs)
    candidates = candidate_groups(graph, work, cfg)
    if not candidates:
        raise InputError(
            "nothing to prune: every channel group is ignored, protected (stem or output layer) or passes "
            "through a LayerNorm/GroupNorm; relax ignored_layers or set protect_first_last: false"
        )
    scores = criterion.score(work, candidates, batches)
    if all(score is None for score in scores):
        raise InputError(
            f"criterion '{cfg.criterion}' ({criterion.summary}) could not score any channel group of this model"
        )
    removals = choose_removals(candidates, scores, cfg)
    groups = tuple(
        PrunedGroup(c.root, c.members, c.channels, tuple(removed), c.unit)
        for c, removed in zip(candidates, removals)
        if removed
    )
    return PruningPlan(criterion=cfg.criterion, ratio=cfg.ratio, groups=groups)


def example_input(shape: list[int], dtype: str = "float32") -> Tensor:
    """Zeros of ``shape``: all that tracing the dependency graph needs."""
    try:
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    except (AttributeError, TypeError, RuntimeError) as exc:
        raise InputError(f"cannot build an example input of shape {shape} and dtype {dtype}: {exc}") from None
