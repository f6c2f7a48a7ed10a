"""Which intermediate tensors feature and contrastive distillation compare, and the hooks that capture them.

Stages are found by running one batch: the outputs of the model's top-level children and of their
children are recorded, and for each spatial resolution the last module to produce it is that
resolution's stage (the end of a ResNet ``layerN``, of a torchvision ``features`` block group, ...).
Student and teacher stages are paired by equal spatial size. The embedding is the input of the last
``nn.Linear`` to run (the classifier), captured by a forward pre-hook.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from spiralprune.core.errors import InputError


@dataclass(frozen=True)
class Probe:
    """What one batch through a model showed: output shapes by module name, in execution order."""

    shapes: dict[str, tuple[int, ...]]
    stage_names: list[str]
    embedding_module: str | None
    embedding_dim: int | None


@dataclass
class OutputTap:
    """Forward hooks keeping the latest outputs of ``names`` and the flattened input of ``embedding_module``."""

    model: nn.Module
    names: list[str]
    embedding_module: str | None
    features: dict[str, Tensor] = field(default_factory=dict, init=False)
    embedding: Tensor | None = field(default=None, init=False)
    _handles: list[Any] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        modules = dict(self.model.named_modules())
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(partial(self._keep_output, name)))
        if self.embedding_module is not None:
            self._handles.append(modules[self.embedding_module].register_forward_pre_hook(self._keep_embedding))

    def _keep_output(self, name: str, _module: nn.Module, _args: Any, output: Tensor) -> None:
        self.features[name] = output

    def _keep_embedding(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self.embedding = args[0].flatten(1)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def probe(model: nn.Module, sample: Tensor, extra_names: Sequence[str] = ()) -> Probe:
    """Run ``sample`` through ``model`` in eval mode and record the shapes the pairing needs."""
    modules = dict(model.named_modules())
    for name in extra_names:
        if name not in modules:
            nearest = difflib.get_close_matches(name, [n for n in modules if n], n=1)
            hint = f" (did you mean '{nearest[0]}'?)" if nearest else ""
            raise InputError(f"distill.feature_pairs names module '{name}', which the model does not have{hint}")
    watched = [n for n in modules if n]
    calls: list[tuple[str, tuple[int, ...]]] = []
    linears: list[tuple[str, int]] = []

    def keep_output(name: str, _module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            calls.append((name, tuple(output.shape)))

    def keep_linear_input(name: str, _module: nn.Module, args: tuple[Any, ...]) -> None:
        linears.append((name, args[0].flatten(1).shape[1]))

    handles = [modules[n].register_forward_hook(partial(keep_output, n)) for n in watched]
    linear_modules = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
    handles += [m.register_forward_pre_hook(partial(keep_linear_input, n)) for n, m in linear_modules]
    was_training = model.training
    model.eval()
    try:
        model(sample)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    call_counts: dict[str, int] = {}
    for name, _ in calls:
        call_counts[name] = call_counts.get(name, 0) + 1
    shapes = {name: shape for name, shape in calls if call_counts[name] == 1}
    # A module called twice (a shared ReLU) has no single output; the last module per resolution wins, among
    # the shallowest that give any: a classifier's top two levels (ResNet's layer1..layer4), deeper where a
    # model loops over its blocks itself (torchvision's SSDlite calls backbone.features.0 and .1, never
    # backbone.features).
    last_by_size: dict[tuple[int, int], str] = {}
    deepest = max((name.count(".") for name in watched), default=0)
    for depth in range(1, max(deepest, 1) + 1):
        for name, shape in calls:
            if name.count(".") <= depth and call_counts[name] == 1 and len(shape) == 4 and shape[2] * shape[3] > 1:
                last_by_size[shape[2:]] = name
        if last_by_size:
            break
    stage_names = sorted(last_by_size.values(), key=[n for n, _ in calls].index)
    embedding_module, embedding_dim = linears[-1] if linears else (None, None)
    return Probe(shapes, stage_names, embedding_module, embedding_dim)


def auto_feature_pairs(student: Probe, teacher: Probe) -> list[tuple[str, str]]:
    """Student and teacher stages with the same spatial size, in the student's order."""
    teacher_by_size = {teacher.shapes[name][2:]: name for name in teacher.stage_names}
    pairs = [
        (name, teacher_by_size[student.shapes[name][2:]])
        for name in student.stage_names
        if student.shapes[name][2:] in teacher_by_size
    ]
    if not pairs:
        raise InputError("no student and teacher stages share a spatial size; set distill.feature_pairs explicitly")
    return pairs


def make_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """A learned projection from student channels to teacher channels: 1x1 conv for [B,C,H,W], linear for [B,N,C]."""
    if len(student_shape) == 4 and len(teacher_shape) == 4 and student_shape[2:] == teacher_shape[2:]:
        return nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1, bias=False)
    tokens_match = len(student_shape) == len(teacher_shape) and student_shape[1:-1] == teacher_shape[1:-1]
    if len(student_shape) in (2, 3) and tokens_match:
        return nn.Linear(student_shape[-1], teacher_shape[-1], bias=False)
    raise InputError(
        f"cannot pair a student feature of shape {list(student_shape[1:])} with a teacher feature of shape "
        f"{list(teacher_shape[1:])}: feature pairs need the same spatial size (or token count)"
    )
