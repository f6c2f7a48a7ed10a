"""Layer-wise (depth) pruning: residual blocks a plan may remove whole.

A residual block computes ``x + f(x)`` (optionally followed by an activation): torchvision's
MobileNetV2 inverted residuals with a skip, ResNet basic and bottleneck blocks without a
downsample. Replacing it by ``nn.Identity`` keeps every shape and removes all of ``f``'s operators,
which channel pruning cannot: on a CPU runtime whose per-operator cost dominates small layers,
cutting the operator count is the larger speed lever (MobileNetV2 at 32x32 on ONNX Runtime CPU,
2026-12-06: a uniform ratio of 0.9 reaches 3.0x; its ten residual blocks removed and a ratio of
0.2 reach 3.6x, and after the same 8 epochs of fine-tuning score 84.0 % against 77.1 %).

A block is found by tracing the module alone with ``torch.fx``: one input, and the output is an
addition of that input and something else (through at most a chain of element-wise activations).
Blocks are the outermost such modules (a block inside a block is removed with it); a module that
fx cannot trace is never removed. How much removing each costs is measured, not estimated: the
rise of the mean cross-entropy over the calibration batches with that block alone replaced
(``block_rises``), in the units of the comparable channel criteria (``sensitivity``,
``taylor-group``), so one knapsack (``spiralprune.pipeline.prune.latency_aware``) weighs blocks and
channels against the milliseconds they save.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from spiralprune.pipeline.prune.group import Batch, Calibration, loss_of, share, summed
from spiralprune.pipeline.prune.sensitivity import mean_loss
from spiralprune.pipeline.prune.taylor import gradients

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU)
ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.leaky_relu}
ADDS = {operator.add, operator.iadd, torch.add}
# Batches of the calibration set a block's rise is measured on: one forward pass each per block.
BLOCK_BATCHES = 2


def residual_blocks(model: nn.Module) -> list[str]:
    """Names of the outermost residual blocks of ``model``, in module order (the model itself excluded)."""
    found: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if _is_residual(child):
                found.append(full)
            else:
                walk(child, f"{full}.")

    walk(model, "")
    return found


def _is_residual(module: nn.Module) -> bool:
    if not any(p.requires_grad for p in module.parameters()):
        return False
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - untraceable (data-dependent control flow...): never removed
        return False
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return False
    modules = dict(module.named_modules())
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    while isinstance(node, fx.Node) and _is_activation(node, modules):
        node = node.args[0]
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target in ADDS):
        return False
    terms = node.args[:2]
    return all(isinstance(a, fx.Node) for a in terms) and inputs[0] in [_through_identity(a, modules) for a in terms]


def _through_identity(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node:
    """What ``node`` is once ``nn.Identity`` calls (a shortcut that does nothing) are looked through."""
    while node.op == "call_module" and isinstance(modules.get(str(node.target)), nn.Identity):
        node = node.args[0]
    return node


def _is_activation(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), ACTIVATION_MODULES)
    if node.op == "call_function":
        return node.target in ACTIVATION_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule ``name`` of ``model``, and the attribute it is held by."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def remove_blocks(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Replace each named block of ``model`` by ``nn.Identity``, in place."""
    for name in names:
        setattr(*_parent(model, name), nn.Identity())
    return model


def inside(layer: str, blocks: Sequence[str]) -> bool:
    """Whether module ``layer`` is one of ``blocks`` or part of one."""
    return any(layer == b or layer.startswith(f"{b}.") for b in blocks)


def block_rises(model: nn.Module, blocks: Sequence[str], calibration: Sequence[Batch]) -> list[float]:
    """Per block, the rise of the mean loss (the task's) over the first ``BLOCK_BATCHES`` calibration
    batches when that block alone is replaced by the identity (clamped at 0); ``model`` is restored. In a
    process group (``spiralprune.pipeline.scoring``) each process measures its ``share`` of the blocks."""
    batches = Calibration(list(calibration)[:BLOCK_BATCHES], loss_of(calibration))
    if not batches:
        return [0.0] * len(blocks)
    rises = {}
    with gradients(model), torch.no_grad():
        full = mean_loss(model, batches)
        for i in share(len(blocks)):  # in a process group, each process its share of the blocks
            parent, child = _parent(model, blocks[i])
            block = getattr(parent, child)
            setattr(parent, child, nn.Identity())
            try:
                rises[i] = torch.tensor([max(0.0, mean_loss(model, batches) - full)], dtype=torch.float64)
            finally:
                setattr(parent, child, block)
    return [float(rise) for rise in summed([1] * len(blocks), rises)]
