"""Torch-Pruning's dependency graph over a model, and the channel groups spiral may remove from it.

A group is every tensor slice coupled to one root layer's output channels (residual adds,
concatenations, depthwise convolutions, the q/k/v projections of one attention layer): removing
channel ``i`` of the root removes the matching slice of every member, so one decision per group
keeps the network consistent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch_pruning as tp
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune.attention import SplitAttention
from spiralprune.pipeline.prune.frozen_norm import FrozenBatchNormPruner
from spiralprune.pipeline.prune.group import PrunableGroup
from spiralprune.pipeline.prune.lstm import LSTMHiddenPruner
from spiralprune.pipeline.tasks import tensors_of

if TYPE_CHECKING:
    from spiralprune.pipeline.prune.config import PruneConfig

ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.LSTM)
SUPPORTED_LAYERS = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.Embedding,
    nn.PReLU,
    nn.LSTM,
    FrozenBatchNormPruner.TARGET_MODULES,
)
# Layer types Torch-Pruning 1.6 cannot prune (or prunes wrongly), with spiral's pruner for each.
CUSTOMIZED_PRUNERS = {nn.LSTM: LSTMHiddenPruner(), FrozenBatchNormPruner.TARGET_MODULES: FrozenBatchNormPruner()}
# Normalizations over several channels: removing channels changes their statistics, so the pruned
# model would not compute the original function minus the removed channels. Groups through them
# (the residual width of transformers) are kept; heads and MLP width are pruned instead.
CHANNEL_MIXING_NORMS = (nn.LayerNorm, nn.GroupNorm)


def check_supported(model: nn.Module) -> None:
    """One line naming the first layer Torch-Pruning cannot follow channels through."""
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM) and (module.num_layers != 1 or module.bidirectional or module.proj_size):
            raise InputError(
                f"layer '{name}' (LSTM, {module.num_layers} layers"
                f"{', bidirectional' if module.bidirectional else ''}) blocks pruning: "
                "only single-layer, unidirectional LSTMs without projection can be pruned"
            )
        owns_tensors = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        )
        if owns_tensors and not any(True for _ in module.children()) and not isinstance(module, SUPPORTED_LAYERS):
            raise InputError(
                f"layer '{name}' ({type(module).__name__}) blocks pruning: Torch-Pruning cannot follow channels "
                "through this layer type"
            )


class TracedGraph(tp.DependencyGraph):
    """Torch-Pruning's graph of a model, traced up to its last layers (``last_layers``: the layers whose
    outputs reach the model's outputs through no other layer). What follows them, reshapes,
    concatenations, a detector's decoding and NMS, holds no channels to remove, and Torch-Pruning's
    grouping follows index mappings through it slowly: torchvision's SSDlite grouped in 0.1 s traced to its
    head's convolutions, in 200-290 s traced through its post-processing (2 vCPUs). The last layers'
    output channels are the model's: they are never pruned.

    Layers whose outputs reach the model's outputs by no differentiable path are traced too, and count
    as last layers: a two-stage detector's region proposal network scores anchors whose boxes it
    detaches, so Torch-Pruning, which follows autograd back from the outputs, would not see that its
    convolution reads the FPN's channels, and pruning those broke it (found on torchvision's Faster R-CNN).
    Their input channels follow the layers before them; their outputs (anchors x classes, box deltas)
    stay whole."""

    last_layers: frozenset[nn.Module] = frozenset()


def build_graph(model: nn.Module, example_inputs: torch.Tensor) -> TracedGraph:
    """Trace ``model`` once; its training modes and ``requires_grad`` flags are left as they were."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    graph = TracedGraph()
    try:
        for param, _ in flags:
            param.requires_grad_(True)
        with torch.enable_grad(), warnings.catch_warnings(), _innermost_layer(model) as running:
            warnings.simplefilter("ignore")
            try:
                return graph.build_dependency(
                    model,
                    example_inputs,
                    forward_fn=lambda m, x: _last_layer_outputs(graph, m, x),
                    customized_pruners=CUSTOMIZED_PRUNERS,
                    verbose=False,
                )
            except Exception as exc:
                where = f"layer '{running[-1][0]}' ({running[-1][1]})" if running else "the model"
                raise InputError(
                    f"{where} failed while Torch-Pruning traced it on an input of shape "
                    f"{list(example_inputs.shape)}: {first_line(exc)}"
                ) from exc
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def _last_layer_outputs(graph: TracedGraph, model: nn.Module, example_inputs: torch.Tensor) -> list[torch.Tensor]:
    """Run ``model`` and return the outputs of its last layers (set on ``graph.last_layers``), found by
    walking autograd back from the model's outputs to the first tensor a layer with parameters returned;
    the model's own outputs where no walk reaches a layer."""
    produced: dict[object, tuple[nn.Module, torch.Tensor]] = {}

    def record(module: nn.Module, _: object, out: object) -> None:
        for tensor in tensors_of(out, strict=False):
            if tensor.grad_fn is not None:
                produced[tensor.grad_fn] = (module, tensor)

    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    handles = [module.register_forward_hook(record) for module in owners]
    try:
        outputs = tensors_of(model(example_inputs), strict=False)
    finally:
        for handle in handles:
            handle.remove()
    reachable = _reachable(t.grad_fn for t in outputs)
    # a layer none of whose outputs the model's outputs reach (an LSTM's unused final states do not count)
    reached = {module for fn, (module, _) in produced.items() if fn in reachable}
    off_graph = {fn: owner for fn, owner in produced.items() if owner[0] not in reached}
    if off_graph and len(off_graph) < len(produced):  # a graph the outputs reach in part (see TracedGraph)
        graph.last_layers = frozenset(module for module, _ in off_graph.values())
        off_tensors = [tensor for _, tensor in off_graph.values()]
        return [*_walk_to_last_layers(graph, outputs, produced), *off_tensors]
    return _walk_to_last_layers(graph, outputs, produced)


def _reachable(roots: Iterable[object]) -> set[object]:
    """Every autograd node that ``roots`` reach."""
    seen: set[object] = set()
    stack = [fn for fn in roots if fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return seen


def _walk_to_last_layers(graph: TracedGraph, outputs: list[torch.Tensor],
                         produced: dict[object, tuple[nn.Module, torch.Tensor]]) -> list[torch.Tensor]:
    """The outputs of the last layers before ``outputs`` (added to ``graph.last_layers``), or ``outputs``
    themselves where no walk back reaches a layer."""
    last: dict[object, tuple[nn.Module, torch.Tensor]] = {}
    seen: set[object] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn in produced:
            last[fn] = produced[fn]
            continue
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    if not last:
        return outputs
    graph.last_layers = graph.last_layers | {module for module, _ in last.values()}
    return [tensor for _, tensor in last.values()]


@contextmanager
def _innermost_layer(model: nn.Module) -> Iterator[list[tuple[str, str]]]:
    """The stack of layers whose forward is running; after an exception its top is where it was raised."""
    running: list[tuple[str, str]] = []

    def enter(name: str, module: nn.Module) -> Callable[..., None]:
        return lambda *_: running.append((name, type(module).__name__))

    def leave(*_: object) -> None:
        running.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name, module)))
            handles.append(module.register_forward_hook(leave))
    try:
        yield running
    finally:
        for handle in handles:
            handle.remove()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def out_pruning_fn(graph: tp.DependencyGraph, module: nn.Module) -> Callable:
    return graph.get_pruner_of_module(module).prune_out_channels


def out_members(graph: tp.DependencyGraph, group: tp.dependency.Group, names: dict[nn.Module, str]) -> tuple[str, ...]:
    """Names of the layers whose output channels shrink with the group's root, in group order."""
    members: dict[str, None] = {}
    for item in group.items:
        module = item.dep.target.module
        if module in names and graph.is_out_channel_pruning_fn(item.dep.handler):
            members[names[module]] = None
    return tuple(members)


def matches(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern + ".")


def check_patterns(model: nn.Module, patterns: list[str], what: str) -> None:
    names = [name for name, _ in model.named_modules() if name]
    for pattern in patterns:
        if not any(matches(name, pattern) for name in names):
            top = sorted({name.split(".")[0] for name in names})
            raise InputError(f"{what} '{pattern}' matches no layer of the model (top-level layers: {', '.join(top)})")


def prunable_groups(graph: TracedGraph, model: nn.Module, cfg: PruneConfig) -> list[PrunableGroup]:
    """Every group the config allows to shrink, each with all of its channels."""
    check_patterns(model, cfg.ignored_layers, "ignored layer")
    check_patterns(model, list(cfg.per_layer), "per_layer entry")
    names = {module: name for name, module in model.named_modules()}
    ignored_modules = [m for n, m in model.named_modules() if any(matches(n, p) for p in cfg.ignored_layers)]
    ignored = {id(t) for m in ignored_modules for t in (m, *m.parameters(recurse=False))}
    nodes = list(graph.module2node.values())
    sinks = {node for node in nodes if not node.outputs or node.module in graph.last_layers}
    stems = set()
    if cfg.protect_first_last:
        stems = {n.module for n in nodes if isinstance(n.module, nn.modules.conv._ConvNd) and not n.inputs}
    attention_of = {
        proj: attn
        for attn in model.modules()
        if isinstance(attn, SplitAttention)
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj)
    }
    prunable = []
    for group in graph.get_all_groups(root_module_types=ROOT_TYPES):
        if _blocked(graph, group, ignored, sinks, stems):
            continue
        root = group[0].dep.target.module
        channels = graph.get_out_channels(root)
        members = out_members(graph, group, names)
        attentions = {attention_of[m] for m in (item.dep.target.module for item in group.items) if m in attention_of}
        unit = 1
        if attentions:
            attn = attentions.pop()
            projections = {names[p] for p in (attn.q_proj, attn.k_proj, attn.v_proj)}
            if attentions or not projections <= set(members) or channels != attn.num_heads * attn.head_dim:
                continue
            unit = attn.head_dim
        if channels // unit > 1:
            prunable.append(PrunableGroup(group, names[root], members, channels, unit))
    return prunable


def _blocked(
    graph: tp.DependencyGraph, group: tp.dependency.Group, ignored: set[int], sinks: set, stems: set
) -> bool:
    for item in group.items:
        node = item.dep.target
        module = node.module
        out = graph.is_out_channel_pruning_fn(item.dep.handler)
        if id(module) in ignored or isinstance(module, (CHANNEL_MIXING_NORMS, nn.MultiheadAttention)):
            return True
        if out and (node in sinks or module in stems):
            return True
        grouped = isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
        if grouped and not module.groups == module.in_channels == module.out_channels:
            return True
    return False
