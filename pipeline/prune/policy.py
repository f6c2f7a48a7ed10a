"""How many channels each group loses, and which: local or global ranking, per-layer ratios, ``round_to``.

Attention groups lose whole heads (``unit`` channels at a time, ranked by their mean score) at the
step's ratio, also under global pruning; ``round_to`` applies to plain channel counts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.graph import matches
from spiralprune.pipeline.prune.group import PrunableGroup


def choose_removals(groups: list[PrunableGroup], scores: list[Tensor | None], cfg: PruneConfig) -> list[list[int]]:
    """For each group, the sorted channel indices to remove (empty: kept whole)."""
    removals: list[list[int]] = [[] for _ in groups]
    pooled: list[int] = []
    for i, (group, score) in enumerate(zip(groups, scores)):
        if score is None:
            continue
        ratio = _override(group, cfg)
        if cfg.global_pruning and ratio is None and group.unit == 1:
            pooled.append(i)
            continue
        units = _unit_scores(group, score)
        kept = uniform_kept(len(units), cfg.ratio if ratio is None else ratio, _round_to(group, cfg))
        removals[i] = _lowest(units, len(units) - kept, group.unit)
    if pooled:
        for i, kept in zip(pooled, _global_kept([scores[i] for i in pooled], cfg.ratio)):
            channels = groups[i].channels
            removals[i] = _lowest(scores[i], channels - _round(kept, channels, cfg.round_to), 1)
    return removals


def _override(group: PrunableGroup, cfg: PruneConfig) -> float | None:
    """The ``per_layer`` ratio of the group: most specific key per member, the smallest over members."""
    ratios = []
    for member in group.members:
        keys = [key for key in cfg.per_layer if matches(member, key)]
        if keys:
            ratios.append(cfg.per_layer[max(keys, key=len)])
    return min(ratios) if ratios else None


def _unit_scores(group: PrunableGroup, score: Tensor) -> Tensor:
    return score.view(-1, group.unit).mean(1) if group.unit > 1 else score


def _round_to(group: PrunableGroup, cfg: PruneConfig) -> int | None:
    return cfg.round_to if group.unit == 1 else None


def uniform_kept(units: int, ratio: float, round_to: int | None) -> int:
    """Units a group of ``units`` keeps when a uniform ``ratio`` of them is removed: the nearest
    count, rounded to the nearest multiple of ``round_to`` (at least one); too-small groups stay whole."""
    return _round(_kept(units, ratio), units, round_to)


def _kept(units: int, ratio: float) -> int:
    return max(1, math.floor(units * (1 - ratio) + 0.5))


def _round(kept: int, units: int, round_to: int | None) -> int:
    """``kept`` rounded to the nearest multiple of ``round_to`` (at least one); too-small groups stay whole."""
    if not round_to:
        return kept
    if units <= round_to:
        return units
    return min(units, max(round_to, round_to * math.floor(kept / round_to + 0.5)))


def _lowest(scores: Tensor, count: int, unit: int) -> list[int]:
    """Channel indices of the ``count`` lowest-scored units (ties: lower index first)."""
    if count <= 0:
        return []
    chosen = torch.argsort(scores, stable=True)[:count].tolist()
    return sorted(u * unit + offset for u in chosen for offset in range(unit))


def _global_kept(scores: list[Tensor], ratio: float) -> list[int]:
    """Channels each group keeps when the lowest ``ratio`` of all pooled channels go (at least one each)."""
    total = sum(len(s) for s in scores)
    to_remove = total - _kept(total, ratio)
    ranked = sorted((float(value), g, c) for g, s in enumerate(scores) for c, value in enumerate(s.tolist()))
    kept = [len(s) for s in scores]
    for _, g, _ in ranked:
        if to_remove == 0:
            break
        if kept[g] > 1:
            kept[g] -= 1
            to_remove -= 1
    return kept
