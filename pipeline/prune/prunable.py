"""A model traced once: what a spiral step plans from, without tracing, copying or scoring it again.

``PrunableModel`` holds a working copy of the model (attention split into q/k/v projections, see
``spiralprune.pipeline.prune.attention``), Torch-Pruning's dependency graph over it, every prunable group, the
operators the latency table knows (``spiralprune.kernels.layers``) and how their channels follow each group.
Per pruning config (criterion, ignored layers, stem protection) it scores the config's groups once
on the step's calibration batches and keeps the scores, so the uniform grid, the latency-aware
ladder (``spiralprune.pipeline.prune.latency_aware``) and the operator lists the predictor screens them by all
come from one trace. It also lists the model's residual blocks (``spiralprune.pipeline.prune.blocks``) and
measures, once, what removing each alone costs; a plan that removes blocks is traced once more per
block set, for the couplings of the shallower model its channel groups must replay on. The caller's model is never modified; one object serves one step (its scores
are of that step's weights and calibration batches).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cached_property

import torch_pruning as tp
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.kernels.layers import Layer, torch_layers
from spiralprune.kernels.ops import Attention, OpSignature
from spiralprune.pipeline.prune.attention import split_attention
from spiralprune.pipeline.prune.blocks import block_rises, inside, remove_blocks, residual_blocks
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.criteria import calibration_batches, get_criterion
from spiralprune.pipeline.prune.graph import build_graph, prunable_groups, check_supported
from spiralprune.pipeline.prune.group import Calibration, PrunableGroup, loss_of
from spiralprune.pipeline.prune.plan import PrunedGroup, PruningPlan
from spiralprune.pipeline.prune.policy import choose_removals


class OperatorShapes:
    """How every operator's input and output channels follow the channels removed from each group."""

    def __init__(self, layers: list[Layer], groups: list[PrunableGroup], graph: tp.DependencyGraph, model: nn.Module):
        self.layers = layers
        self.terms: dict[str, list[list[tuple[int, float]]]] = {
            "out": [[] for _ in layers], "in": [[] for _ in layers]
        }
        by_name: dict[str, list[int]] = defaultdict(list)
        for i, layer in enumerate(layers):
            by_name[layer.name].append(i)
        names = {module: name for name, module in model.named_modules()}
        for g, group in enumerate(groups):
            for item in group.group.items:
                name = names.get(item.dep.target.module)
                if name not in by_name:
                    continue
                if graph.is_out_channel_pruning_fn(item.dep.handler):
                    side = "out"
                elif graph.is_in_channel_pruning_fn(item.dep.handler):
                    side = "in"
                else:
                    continue
                multiplicity = len(item.idxs) / group.channels  # e.g. flattened spatial positions
                for i in by_name[name]:
                    self.terms[side][i].append((g, multiplicity))
        for i, layer in enumerate(layers):
            if isinstance(layer.op, Attention):  # heads follow the query projection's channels
                for j in by_name.get(f"{layer.name}.q_proj", []):
                    self.terms["out"][i] = [(g, m / layer.op.head_dim) for g, m in self.terms["out"][j]]
        self.touching: dict[int, list[int]] = defaultdict(list)
        for i in range(len(layers)):
            for g in sorted({g for side in self.terms.values() for g, _ in side[i]}):
                self.touching[g].append(i)

    def op(self, i: int, removed: Sequence[int]) -> OpSignature:
        """Operator ``i`` with ``removed[g]`` channels gone from every group ``g``."""
        op = self.layers[i].op
        cut = {side: round(sum(m * removed[g] for g, m in terms[i])) for side, terms in self.terms.items()}
        if isinstance(op, Attention):
            return op.resized(out_channels=op.heads - cut["out"])
        return op.resized(
            in_channels=op.in_channels - cut["in"] if self.terms["in"][i] else None,
            out_channels=op.out_channels - cut["out"] if self.terms["out"][i] else None,
        )


class PrunableModel:
    """One step's model, traced once: its groups, their scores per config, and the operators any
    plan of it would leave (see the module docstring)."""

    def __init__(self, model: nn.Module, example_inputs: Tensor):
        self.work = split_attention(copy.deepcopy(model))
        check_supported(self.work)
        self.graph = build_graph(self.work, example_inputs)
        # Every group, stem and output included: a plan of any config (or a recorded one) is listed
        # against these; a config's own groups are a subset, found by their root.
        self.groups = prunable_groups(self.graph, self.work, PruneConfig(protect_first_last=False))
        # A group is found by its root or, in a plan made with blocks removed (where a removed
        # block's layer may have been the root), by any of its members.
        self.index = {member: g for g, group in enumerate(self.groups) for member in group.members}
        self.index.update({group.root: g for g, group in enumerate(self.groups)})
        self.shapes = OperatorShapes(torch_layers(self.work, example_inputs), self.groups, self.graph, self.work)
        self.example_inputs = example_inputs
        self._scores: dict[tuple, list[tuple[PrunableGroup, Tensor | None]]] = {}
        self._rises: list[float] | None = None
        self._members: dict[tuple[str, ...], dict[str, tuple[str, tuple[str, ...]]]] = {}

    def scored(
        self, cfg: PruneConfig, calibration: Iterable[tuple[Tensor, Tensor]] | None
    ) -> list[tuple[PrunableGroup, Tensor | None]]:
        """The groups ``cfg`` lets shrink, each with the criterion's scores (None: it could not score
        that group); computed on the first call for a criterion and group set, then kept."""
        key = self._key(cfg)
        if key not in self._scores:
            groups = self.groups_of(cfg)
            criterion = get_criterion(cfg.criterion)
            scores = criterion.score(self.work, groups, calibration_batches(cfg.criterion, calibration))
            if all(score is None for score in scores):
                raise InputError(
                    f"criterion '{cfg.criterion}' ({criterion.summary}) could not score any channel group of this model"
                )
            self._scores[key] = list(zip(groups, scores))
        return self._scores[key]

    def keep(self, cfg: PruneConfig, scores: list[Tensor | None], rises: list[float] | None) -> None:
        """``cfg``'s scores of ``groups_of(cfg)`` (and, unless None, the blocks' rises) computed elsewhere:
        by ``spiralprune.pipeline.scoring``'s processes, on this model and the same calibration batches."""
        self._scores[self._key(cfg)] = list(zip(self.groups_of(cfg), scores))
        if rises is not None:
            self._rises = rises

    def kept(self, cfg: PruneConfig, rises: bool) -> bool:
        """Whether ``cfg``'s scores and, with ``rises``, the blocks' rises are computed already."""
        return self._key(cfg) in self._scores and (not rises or self._rises is not None)

    @staticmethod
    def _key(cfg: PruneConfig) -> tuple:
        """What decides a config's scores: its criterion and its groups."""
        return cfg.criterion, tuple(cfg.ignored_layers), cfg.protect_first_last, tuple(cfg.per_layer)

    @cached_property
    def blocks(self) -> list[str]:
        """The model's residual blocks (traced on first use: only the latency knapsack weighs them)."""
        return residual_blocks(self.work)

    def block_rises(self, calibration: Sequence[tuple[Tensor, Tensor]] | None) -> list[float]:
        """Per residual block (``self.blocks``), the measured loss rise of removing it alone; kept."""
        if self._rises is None:
            self._rises = block_rises(self.work, self.blocks, Calibration(calibration or [], loss_of(calibration)))
        return self._rises

    def depth_plan(self, criterion: str, blocks: Sequence[str], removed: dict[str, tuple[int, ...]]) -> PruningPlan:
        """The plan that removes ``blocks`` whole and ``removed[root]`` channels of each group of this
        model (groups inside a removed block go with it). The channel groups are those of the model
        with the blocks removed (traced once per block set), whose coupled members the plan must
        list to replay: a removed block's layers no longer share the channels of its stage."""
        blocks = tuple(sorted(blocks, key=self.blocks.index))
        if blocks not in self._members:
            work = remove_blocks(copy.deepcopy(self.work), blocks)
            graph = build_graph(work, self.example_inputs)
            traced = prunable_groups(graph, work, PruneConfig(protect_first_last=False))
            self._members[blocks] = {
                old.root: (new.root, new.members)
                for old in self.groups for new in traced if new.root in old.members and new.channels == old.channels
            }
        members = self._members[blocks]
        groups, total = [], 0
        for g in self.groups:
            if g.root not in members:
                if inside(g.root, blocks):
                    continue
                raise InputError(f"group '{g.root}' has no counterpart once blocks {list(blocks)} are removed")
            total += g.channels
            if removed.get(g.root):
                root, coupled = members[g.root]
                groups.append(PrunedGroup(root, coupled, g.channels, removed[g.root], g.unit))
        ratio = sum(len(g.removed) for g in groups) / total if total else 0.0  # of the channels left in the model
        return PruningPlan(criterion=criterion, ratio=ratio, groups=tuple(groups), blocks=blocks)

    def groups_of(self, cfg: PruneConfig) -> list[PrunableGroup]:
        """The groups ``cfg`` lets shrink (its ignored layers and stem protection applied)."""
        groups = prunable_groups(self.graph, self.work, cfg)
        if not groups:
            raise InputError(
                "nothing to prune: every channel group is ignored, protected (stem or output layer) or passes "
                "through a LayerNorm/GroupNorm; relax ignored_layers or set protect_first_last: false"
            )
        return groups

    def floor_plan(self, cfg: PruneConfig, *, blocks: bool = False) -> PruningPlan:
        """Every group ``cfg`` lets shrink cut to its fewest channels (one unit, or ``round_to``) and,
        with ``blocks``, every residual block removed: the cheapest model pruning can reach, however
        many steps it takes (which channels go is moot)."""
        groups = []
        for g in self.groups_of(cfg):
            fewest = cfg.round_to if g.unit == 1 and cfg.round_to else g.unit
            if g.channels > fewest:
                groups.append(PrunedGroup(g.root, g.members, g.channels, tuple(range(g.channels - fewest)), g.unit))
        if blocks and self.blocks:
            return self.depth_plan(cfg.criterion, self.blocks, {g.root: g.removed for g in groups})
        return PruningPlan(criterion=cfg.criterion, ratio=1.0, groups=tuple(groups))

    def uniform_plan(self, cfg: PruneConfig, calibration: Iterable[tuple[Tensor, Tensor]] | None = None) -> PruningPlan:
        """``cfg.ratio`` (global or per layer, as the policy says) of the scored channels removed."""
        scored = self.scored(cfg, calibration)
        removals = choose_removals([g for g, _ in scored], [s for _, s in scored], cfg)
        groups = tuple(
            PrunedGroup(g.root, g.members, g.channels, tuple(removed), g.unit)
            for (g, _), removed in zip(scored, removals)
            if removed
        )
        return PruningPlan(criterion=cfg.criterion, ratio=cfg.ratio, groups=groups)

    def removed_channels(self, plan: PruningPlan) -> list[int]:
        """Channels ``plan`` removes from each of ``self.groups``, refused when it was made for another model."""
        removed = [0] * len(self.groups)
        for group in plan.groups:
            g = self.index.get(group.root)
            if g is None or self.groups[g].channels != group.channels:
                raise InputError(
                    f"pruning plan does not fit this model: no prunable group '{group.root}' of {group.channels} channels"
                )
            removed[g] = len(group.removed)
        return removed

    def layers(self, plan: PruningPlan) -> list[Layer]:
        """The model's operators as ``plan`` would leave them, without pruning, exporting or compiling
        (an empty plan: the model's own operators), for a latency predictor to screen."""
        removed = self.removed_channels(plan)
        return [
            Layer(layer.name, self.shapes.op(i, removed)) for i, layer in enumerate(self.shapes.layers)
            if not inside(layer.name, plan.blocks)
        ]


def plan_pruning(
    model: nn.Module, example_inputs: Tensor, cfg: PruneConfig, *, calibration: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> PruningPlan:
    """One plan: ``model``'s groups scored with ``cfg.criterion`` and ``cfg.ratio`` of their channels
    chosen (a step that makes several plans keeps one ``PrunableModel`` instead)."""
    return PrunableModel(model, example_inputs).uniform_plan(cfg, calibration)
