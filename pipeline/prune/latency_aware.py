"""Latency-aware channel allocation, after HALP: keep the most importance per millisecond saved.

Every prunable group of a ``PrunableModel`` (the same groups, criterion scores, ``ignored_layers``
and stem/output protection as its uniform plans, scored once per step) may keep one of a ladder of
channel counts ("rungs"): multiples of ``round_to``, or without it of a power of two chosen so a
group has at most about 32 rungs (heads for attention groups), down to what a uniform ratio of
``max_group_ratio`` leaves of the channels it had before the run's first step (rounded as
``plan_pruning`` rounds it, so the floor is the structure of that uniform ratio). From the full
model, a greedy knapsack repeatedly takes the cheapest move —
one group down to the next rung where the cost actually drops, i.e. onto the top of the next step
of the latency staircase — priced as the importance of the channels it removes divided by the
cost it saves, until the predicted cost meets the goal. Removing a residual block whole is a
move too (``blocks``; its measured loss rise over what its operators still cost), with a criterion
whose scores are a loss change in the same units.

Importance is what the criterion says, per unit (channel or head). Criteria normalised per layer
(NNI's and Torch-Pruning's) are divided by each group's mean, so every group's average unit weighs
the same and milliseconds decide between groups. Criteria whose scores compare across layers
(``Criterion.comparable_across_layers``, e.g. ``taylor-group``, an estimated loss change) keep their
raw scores, a head's being the sum over its channels, divided by one constant for all groups (the
mean over every unit), which scales the numbers and changes no decision.

The cost is the latency predicted from the operator table (``kernels``): each operator's input and
output channels follow the groups that feed it, so shrinking a layer also makes its consumers
cheaper, and an unaligned count that is slower on the target is never taken for a saving. With
``cost="macs"`` the same knapsack prices moves in multiply-accumulates instead (FLOPs-driven
pruning, for comparison). ``ratio``, ``global_pruning`` and ``per_layer`` of the config are what
this allocation replaces and are not used.

``plans_for_latency`` serves a ladder of goals in one greedy pass (the knapsack only moves down,
so each goal's plan is a snapshot on the way to the lowest), each snapshot then refilled: moves
given back, the most importance per millisecond first, while the plan stays within its goal (one
large move, such as a block, can leave the greedy far below it); ``PrunableModel.layers`` lists the
operators each would leave, so a predictor can screen them before only the promising ones are measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from spiralprune.core.errors import InputError
from spiralprune.kernels.ops import OpSignature
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.pipeline.prune.blocks import inside
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.criteria import calibration_batches, get_criterion
from spiralprune.pipeline.prune.group import PrunableGroup
from spiralprune.pipeline.prune.plan import PrunedGroup, PruningPlan
from spiralprune.pipeline.prune.policy import uniform_kept
from spiralprune.pipeline.prune.prunable import OperatorShapes, PrunableModel

COSTS = ("latency", "macs")
MAX_RUNGS = 32
# A move must save more than this fraction of the touched operators' latency to count as a step
# down the staircase; smaller differences are within the table's timing noise.
STAIR_TOLERANCE = 0.02
LOOKAHEAD = 4


@dataclass(frozen=True)
class Allocation:
    """The chosen plan, channels kept per group root, and the predicted cost before and after.

    Costs are milliseconds for ``cost="latency"`` (calibrated prediction), MACs for ``cost="macs"``.
    """

    plan: PruningPlan
    kept: dict[str, int]
    start: float
    predicted: float
    goal: float
    cost: str

    @property
    def met(self) -> bool:
        return self.predicted <= self.goal


@dataclass
class _Group:
    index: int  # in ``PrunableModel.groups``, the order ``OperatorShapes`` counts removed channels in
    prunable: PrunableGroup
    removal_order: np.ndarray  # unit indices, least important first
    sorted_importance: np.ndarray  # per unit, ascending; mean 1 per group, or over all groups if comparable
    rungs: list[int]  # kept unit counts allowed, descending; rungs[0] keeps every unit
    level: int = 0

    @property
    def units(self) -> int:
        return self.prunable.channels // self.prunable.unit

    def removed_channels(self, level: int) -> int:
        return (self.units - self.rungs[level]) * self.prunable.unit

    def lost(self, start: int, end: int) -> float:
        """Importance of the units removed going from rung ``start`` down to rung ``end``."""
        first, last = self.units - self.rungs[start], self.units - self.rungs[end]
        return float(self.sorted_importance[first:last].sum())


def plans_for_latency(
    prunable: PrunableModel,
    cfg: PruneConfig,
    goals: Sequence[float],
    *,
    predictor: LatencyPredictor | None = None,
    cost: str = "latency",
    calibration: Iterable[tuple[Tensor, Tensor]] | None = None,
    max_group_ratio: float = 0.9,
    original: Mapping[str, int] | None = None,
    blocks: bool = False,
) -> list[Allocation]:
    """For each of ``goals`` (in their order), the plan whose predicted cost meets it (ms, or MACs
    for ``cost="macs"``) at the least importance lost, scored and allocated once.

    ``max_group_ratio`` caps the fraction of any group's channels removed, counted from
    ``original[root]`` (the group's channels before any step; default: its channels now), so a
    group is never cut below what a uniform ratio of ``max_group_ratio`` leaves of it. When no
    allowed move reaches a goal, the cheapest plan found is returned for it with ``met`` false.
    ``blocks``: the model's residual blocks (``PrunableModel.blocks``) are moves too, priced as
    their measured loss rise (``PrunableModel.block_rises``) over every millisecond their operators
    still cost; only with a criterion whose scores compare across layers (the same units), so a
    per-layer normalised criterion never removes a block.
    """
    if cost not in COSTS:
        raise InputError(f"unknown allocation cost '{cost}'; valid: {', '.join(COSTS)}")
    if cost == "latency" and predictor is None:
        raise InputError("latency-aware allocation needs a latency predictor")
    if not goals or not all(math.isfinite(t) and t > 0 for t in goals):
        raise InputError(f"allocation goals must be positive numbers, got {list(goals)}")
    if not 0 < max_group_ratio < 1:
        raise InputError(f"max_group_ratio must be between 0 and 1 (exclusive), got {max_group_ratio}")
    kept = [(c, s) for c, s in prunable.scored(cfg, calibration) if s is not None]
    comparable = get_criterion(cfg.criterion).comparable_across_layers
    unit_scale = float(np.concatenate([_per_unit(c, s, comparable) for c, s in kept]).mean()) if comparable else None
    original = original or {}
    groups = [
        _group(prunable.index[c.root], c, s, cfg.round_to, max_group_ratio, original.get(c.root, c.channels), unit_scale)
        for c, s in kept
    ]
    shapes = prunable.shapes
    if cost == "latency":
        scale, overhead = predictor.calibration.scale, predictor.calibration.overhead_ms

        def costs(ops: Sequence[OpSignature]) -> list[float]:
            return predictor.table.latencies(ops)
    else:
        scale, overhead = 1.0, 0.0

        def costs(ops: Sequence[OpSignature]) -> list[float]:
            return [float(op.macs()) for op in ops]

    tolerance = STAIR_TOLERANCE if cost == "latency" else 0.0
    whole = []
    if weighs_blocks(cfg, blocks) and prunable.blocks:
        rises = prunable.block_rises(calibration_batches(cfg.criterion, calibration))
        whole = [
            _Block(name, [i for i, layer in enumerate(shapes.layers) if inside(layer.name, [name])],
                   rise / unit_scale if unit_scale > 0 else 0.0)
            for name, rise in zip(prunable.blocks, rises)
        ]
    sums = sorted({(t - overhead) / scale for t in goals}, reverse=True)
    start, snapshots = _greedy(groups, whole, shapes, len(prunable.groups), costs, sums, tolerance)
    prunables = [g.prunable for g in groups]
    allocations = []
    for goal in goals:
        levels, gone, total = snapshots[(goal - overhead) / scale]
        removed = [_removed_indices(g, level) for g, level in zip(groups, levels)]
        if gone:
            plan = prunable.depth_plan(cfg.criterion, gone, {c.root: tuple(r) for c, r in zip(prunables, removed) if r})
        else:
            plan = PruningPlan(
                criterion=cfg.criterion,
                ratio=sum(len(r) for r in removed) / sum(c.channels for c in prunables),
                groups=tuple(
                    PrunedGroup(c.root, c.members, c.channels, tuple(r), c.unit)
                    for c, r in zip(prunables, removed) if r
                ),
            )
        allocations.append(Allocation(
            plan=plan,
            kept={c.root: c.channels - len(r) for c, r in zip(prunables, removed)},
            start=scale * start + overhead,
            predicted=scale * total + overhead,
            goal=goal,
            cost=cost,
        ))
    return allocations


def weighs_blocks(cfg: PruneConfig, blocks: bool) -> bool:
    """Whether the knapsack removes residual blocks: asked for, and ``cfg``'s criterion measures
    importance in the units of a block's loss rise."""
    return blocks and get_criterion(cfg.criterion).comparable_across_layers


def _per_unit(group: PrunableGroup, score: Tensor, comparable: bool) -> np.ndarray:
    """Score per unit: a head's is the sum of its channels' (comparable scores add up) or their mean."""
    per_channel = score.detach().double().view(-1, group.unit)
    return (per_channel.sum(1) if comparable else per_channel.mean(1)).numpy()


def _group(
    index: int, group: PrunableGroup, score: Tensor, round_to: int | None, max_ratio: float, original: int,
    scale: float | None = None,
) -> _Group:
    """The group's ladder of rungs and its units' importance.

    ``scale`` None: the criterion is normalised per layer, so the units' scores are divided by their
    own mean (mean 1 per group; all 1 if they are all zero). A number: the criterion's scores compare
    across layers (``Criterion.comparable_across_layers``) and are only divided by this constant,
    common to every group (the mean unit score over all groups), so groups keep their relative weight.
    """
    unit = group.unit
    per_unit = _per_unit(group, score, scale is not None)
    if scale is None:
        mean = per_unit.mean()
        importance = per_unit / mean if mean > 0 else np.ones_like(per_unit)
    else:
        importance = per_unit / scale if scale > 0 else np.zeros_like(per_unit)
    order = np.argsort(importance, kind="stable")
    units = len(importance)
    # the floor is what a uniform ratio of max_ratio keeps of the original group, rounded the same
    # way, so a run capped at 0.8 can reach the structure of Torch-Pruning's ratio 0.8 and no further
    floor = min(units, uniform_kept(original // unit, max_ratio, round_to if unit == 1 else None))
    step = round_to if unit == 1 and round_to else 2 ** int(math.log2(max(1, units // MAX_RUNGS)))
    if unit == 1 and round_to and units <= round_to:
        rungs = [units]  # as plan_pruning: too small to round, kept whole
    else:
        lowest = max(step, step * math.ceil(floor / step))
        rungs = [units] + [k for k in range(step * ((units - 1) // step), lowest - 1, -step)]
    return _Group(index, group, order, importance[order], rungs)


def _greedy(
    groups: list[_Group], blocks: list[_Block], shapes: OperatorShapes, every: int, costs, goals: Sequence[float],
    tolerance: float,
) -> tuple[float, dict[float, tuple[list[int], tuple[str, ...], float]]]:
    """Move groups down their rungs and remove blocks until the operator-cost sum meets each of
    ``goals`` (descending).

    ``every`` is the number of the model's groups (``removed`` counts channels per group of the model,
    ``groups`` are those the config lets shrink). Returns the starting sum and, per goal, the
    groups' levels, the blocks removed and the sum where it was met (or where no move was left).
    """
    removed = [0] * every
    current = costs([shapes.op(i, removed) for i in range(len(shapes.layers))])
    start = total = float(sum(current))
    snapshots: dict[float, tuple[list[int], tuple[str, ...], float]] = {}
    for goal in goals:
        total = _descend(groups, blocks, shapes, costs, goal, tolerance, removed, current, total)
        snapshots[goal] = _refill(groups, blocks, shapes, costs, goal, list(removed), list(current), total)
    return start, snapshots


def _refill(
    groups: list[_Group], blocks: list[_Block], shapes: OperatorShapes, costs, goal: float, removed: list[int],
    current: list[float], total: float,
) -> tuple[list[int], tuple[str, ...], float]:
    """The greedy's state for ``goal`` with moves given back while the sum stays within it: the most
    importance per cost added first (a rung up on the same stair costs nothing), a removed block restored
    as a move too. The greedy takes whole moves, and one large move (a block) can leave the sum far under
    the goal; this fills that room, so that every goal gets a plan near it. Returns the groups'
    levels, the blocks still removed and the sum; the greedy's own state (``groups``' levels, ``blocks``'
    flags, ``removed``/``current`` as the caller passes copies) is left as it was."""
    levels = [g.level for g in groups]
    gone = {k for k, b in enumerate(blocks) if b.removed}
    while True:
        dead = {i for k in gone for i in blocks[k].ops}
        proposals = []  # (group index, or -1 - block index; level; the operators it changes)
        for g, group in enumerate(groups):
            for level in range(max(0, levels[g] - LOOKAHEAD), levels[g]):
                trial = [*removed[: group.index], group.removed_channels(level), *removed[group.index + 1 :]]
                proposals.append((g, level, {i: shapes.op(i, trial) for i in shapes.touching[group.index]}))
        for k in gone:
            others = {i for j in gone - {k} for i in blocks[j].ops}
            proposals.append((-1 - k, 0, {i: shapes.op(i, removed) for i in blocks[k].ops if i not in others}))
        prices = iter(costs([op for _, _, ops in proposals for op in ops.values()]))
        best: tuple[float, float] | None = None
        for g, level, ops in proposals:
            if g >= 0:
                new = {i: 0.0 if i in dead else price for i, price in zip(ops, prices)}
                regained = groups[g].lost(level, levels[g])
            else:
                new = dict(zip(ops, prices))
                regained = blocks[-1 - g].importance
            added = sum(new.values()) - sum(current[i] for i in new)
            rank = (regained / added if added > 0 else math.inf, regained)
            if total + added <= goal and (best is None or rank > best):
                best, move = rank, (g, level, new)
        if best is None:
            return levels, tuple(b.name for k, b in enumerate(blocks) if k in gone), total
        g, level, new = move
        if g >= 0:
            levels[g] = level
            removed[groups[g].index] = groups[g].removed_channels(level)
        else:
            gone.discard(-1 - g)
        for i, value in new.items():
            total += value - current[i]
            current[i] = value


def _descend(
    groups: list[_Group], blocks: list[_Block], shapes: OperatorShapes, costs, goal: float, tolerance: float,
    removed: list[int], current: list[float], total: float,
) -> float:
    """Take the cheapest moves until ``total`` meets ``goal`` or none is left; updates the state in place."""
    dead = {i for b in blocks if b.removed for i in b.ops}  # operators of removed blocks cost nothing
    while total > goal:
        moves: dict[int, tuple[float, int, dict[int, float]]] = {}
        window = dict.fromkeys(range(len(groups)), LOOKAHEAD)
        pending = [g for g, group in enumerate(groups) if group.level + 1 < len(group.rungs)]
        while pending:
            proposals = []
            for g in pending:
                group = groups[g]
                for level in range(group.level + 1, min(len(group.rungs), group.level + 1 + window[g])):
                    trial = [*removed[: group.index], group.removed_channels(level), *removed[group.index + 1 :]]
                    proposals.append((g, level, {i: shapes.op(i, trial) for i in shapes.touching[group.index]}))
            prices = iter(costs([op for _, _, ops in proposals for op in ops.values()]))
            for g, level, ops in proposals:
                new = {i: 0.0 if i in dead else price for i, price in zip(ops, prices)}
                before = sum(current[i] for i in ops)
                saved = before - sum(new.values())
                if saved <= 0 or saved <= tolerance * before:
                    continue  # a rung on the same stair (or slower): not a saving
                price = groups[g].lost(groups[g].level, level) / saved
                if g not in moves or price < moves[g][0]:
                    moves[g] = (price, level, new)
            # A group whose near rungs are all on one stair looks further down its ladder.
            pending = [g for g in pending if g not in moves and groups[g].level + window[g] + 1 < len(groups[g].rungs)]
            for g in pending:
                window[g] *= 4
        cuts = {}
        for k, block in enumerate(blocks):
            saved = sum(current[i] for i in block.ops)
            if not block.removed and saved > 0:
                cuts[k] = (block.importance / saved, {i: 0.0 for i in block.ops})
        if not moves and not cuts:
            break
        cut = min(cuts.items(), key=lambda item: item[1][0], default=None)
        move = min(moves.items(), key=lambda item: item[1][0], default=None)
        if move is None or (cut is not None and cut[1][0] < move[1][0]):
            k, (_, new) = cut
            blocks[k].removed = True
            dead.update(blocks[k].ops)
        else:
            g, (_, level, new) = move
            groups[g].level = level
            removed[groups[g].index] = groups[g].removed_channels(level)
        for i, value in new.items():
            total += value - current[i]
            current[i] = value
    return total


@dataclass
class _Block:
    name: str
    ops: list[int]  # indices of its operators in ``OperatorShapes.layers``
    importance: float  # measured loss rise of removing it, on the groups' importance scale
    removed: bool = False


def _removed_indices(group: _Group, level: int) -> list[int]:
    count = group.units - group.rungs[level]
    unit = group.prunable.unit
    return sorted(int(u) * unit + offset for u in group.removal_order[:count] for offset in range(unit))
