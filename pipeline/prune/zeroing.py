"""The reference a pruned model is checked against: the original model with the removed channels zeroed.

Every slice the plan removes (filters, biases, BatchNorm scales, input columns of the consumers,
LSTM gate rows, q/k/v rows of removed heads) is set to zero in a copy of the unpruned model. Before
any fine-tuning the pruned model must compute the same outputs; a surgery that removed other
channels than the plan names, or misaligned two coupled layers, cannot.
"""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_pruning.pruner import function

from spiralprune.pipeline.prune.attention import split_attention
from spiralprune.pipeline.prune.frozen_norm import FrozenBatchNormPruner
from spiralprune.pipeline.prune.graph import build_graph, out_pruning_fn
from spiralprune.pipeline.prune.lstm import LSTMHiddenPruner, gate_rows
from spiralprune.pipeline.prune.plan import PruningPlan


def zero_removed(model: nn.Module, plan: PruningPlan, example_inputs: Tensor) -> nn.Module:
    """A copy of the unpruned ``model`` whose outputs are what the pruned model must compute."""
    masked = split_attention(copy.deepcopy(model))
    graph = build_graph(masked, example_inputs)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for recorded in plan.groups:
            root = modules[recorded.root]
            group = graph.get_pruning_group(root, out_pruning_fn(graph, root), list(recorded.removed))
            for item in group.items:
                _zero(graph, item.dep, item.idxs)
    return masked


def _zero(graph: tp.DependencyGraph, dep: tp.dependency.Dependency, idxs: list[int]) -> None:
    target = dep.target.module
    pruner = graph.get_pruner_of_module(target)
    out = graph.is_out_channel_pruning_fn(dep.handler)
    index = torch.tensor(sorted(idxs), dtype=torch.long)
    if isinstance(pruner, function.DepthwiseConvPruner) or (out and isinstance(pruner, function.ConvPruner)):
        _rows(target.weight, index, dim=1 if target.transposed else 0)
        _rows(target.bias, index, dim=0)
    elif isinstance(pruner, function.ConvPruner):
        if target.groups != 1:
            raise TypeError(f"cannot zero input channels of a grouped convolution {target}")
        _rows(target.weight, index, dim=0 if target.transposed else 1)
    elif isinstance(pruner, function.LinearPruner):
        _rows(target.weight, index, dim=0 if out else 1)
        if out:
            _rows(target.bias, index, dim=0)
    elif isinstance(pruner, (function.BatchnormPruner, FrozenBatchNormPruner)):
        _rows(target.weight, index, dim=0)
        _rows(target.bias, index, dim=0)
    elif isinstance(pruner, function.EmbeddingPruner):
        _rows(target.weight, index, dim=1)
    elif isinstance(pruner, function.ParameterPruner):
        _rows(target, index, dim=dep.target.pruning_dim)
    elif isinstance(pruner, LSTMHiddenPruner):
        if out:
            rows = torch.tensor(gate_rows(index.tolist(), target.hidden_size), dtype=torch.long)
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                _rows(getattr(target, name, None), rows, dim=0)
            _rows(target.weight_hh_l0, index, dim=1)
        else:
            _rows(target.weight_ih_l0, index, dim=1)
    elif not isinstance(pruner, tp.ops.DummyPruner):
        raise TypeError(f"cannot zero channels of {type(target).__name__}")


def _rows(tensor: Tensor | None, index: Tensor, dim: int) -> None:
    if tensor is not None:
        tensor.index_fill_(dim, index.to(tensor.device), 0.0)
