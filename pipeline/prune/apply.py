"""Remove a plan's channels physically, in place, with Torch-Pruning's dependency graph."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune.attention import SplitAttention, split_attention
from spiralprune.pipeline.prune.blocks import remove_blocks, residual_blocks
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.graph import (
    ROOT_TYPES,
    build_graph,
    check_supported,
    first_line,
    out_members,
    out_pruning_fn,
)
from spiralprune.pipeline.prune.plan import PrunedGroup, PruningPlan
from spiralprune.pipeline.prune.prunable import plan_pruning


def apply_plan(model: nn.Module, plan: PruningPlan, example_inputs: Tensor) -> nn.Module:
    """Shrink ``model`` in place; replaying a plan on a fresh base model yields the identical structure.

    Attention layers are always split (``SplitAttention``), so a replayed model matches the one the
    plan was made on even when no head was removed.
    """
    split_attention(model)
    check_supported(model)
    if plan.blocks:
        found = residual_blocks(model)
        missing = [b for b in plan.blocks if b not in found]
        if missing:
            raise InputError(f"pruning plan does not fit this model: '{missing[0]}' is not a residual block here")
        remove_blocks(model, plan.blocks)
    if not plan.groups:
        if plan.blocks:
            _check_runs(model, example_inputs)
        return model
    flags = {name: param.requires_grad for name, param in model.named_parameters()}
    graph = build_graph(model, example_inputs)
    names = {module: name for name, module in model.named_modules()}
    modules = dict(model.named_modules())
    for recorded in plan.groups:
        root = _root(modules, recorded)
        group = graph.get_pruning_group(root, out_pruning_fn(graph, root), list(recorded.removed))
        members = out_members(graph, group, names)
        if members != recorded.members:
            raise InputError(
                f"pruning plan does not fit this model: channels of '{recorded.root}' are coupled to "
                f"{list(members)} here, but to {list(recorded.members)} in the plan"
            )
        try:
            group.prune()
        except Exception as exc:
            raise InputError(
                f"layer '{recorded.root}' ({type(root).__name__}) blocks pruning: Torch-Pruning failed to "
                f"remove its channels: {first_line(exc)}"
            ) from exc
    for module in model.modules():
        if isinstance(module, SplitAttention):
            module.sync_num_heads()
    for name, param in model.named_parameters():
        param.requires_grad_(flags[name])
    _check_runs(model, example_inputs)
    return model


def _root(modules: dict[str, nn.Module], recorded: PrunedGroup) -> nn.Module:
    root = modules.get(recorded.root)
    if not isinstance(root, ROOT_TYPES):
        found = "no such layer" if root is None else f"a {type(root).__name__}"
        raise InputError(f"pruning plan does not fit this model: its layer '{recorded.root}' is {found} here")
    channels = root.hidden_size if isinstance(root, nn.LSTM) else _out_channels(root)
    if channels != recorded.channels:
        raise InputError(
            f"pruning plan does not fit this model: layer '{recorded.root}' has {channels} output channels, "
            f"the plan expects {recorded.channels}"
        )
    if not recorded.removed or len(set(recorded.removed)) >= channels or not 0 <= min(recorded.removed) <= max(
        recorded.removed
    ) < channels:
        raise InputError(
            f"pruning plan does not fit this model: invalid channel indices for '{recorded.root}' "
            f"({len(recorded.removed)} of {channels})"
        )
    return root


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _check_runs(model: nn.Module, example_inputs: Tensor) -> None:
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(example_inputs)
    except Exception as exc:
        raise InputError(f"the pruned model no longer runs: {first_line(exc)}") from exc
    finally:
        for module, training in modes:
            module.training = training


def prune(
    model: nn.Module,
    example_inputs: Tensor,
    cfg: PruneConfig,
    *,
    calibration: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> tuple[nn.Module, PruningPlan]:
    """Plan with ``cfg`` and apply the plan to ``model`` in place."""
    plan = plan_pruning(model, example_inputs, cfg, calibration=calibration)
    return apply_plan(model, plan, example_inputs), plan
