"""The task interface, and a model's outputs as tasks, the export and parity see them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor
from torch.utils.data import default_collate

from spiralprune.core.errors import InputError
from spiralprune.pipeline.tasks.config import TaskConfig
from spiralprune.pipeline.tasks.metric import Metric

Outputs = dict[str, Tensor]  # a model's outputs by name, in the order it returns them


def tensors_of(out: Any, *, strict: bool = True) -> list[Tensor]:
    """The tensors of ``out`` in the order torch's ONNX export flattens them (nested tuples too: an LSTM's
    ``(output, (h, c))``). Anything else in it (an empty tuple, a ``None``) is an InputError, or with
    ``strict`` False left out: what the pruner's forward hooks see of any layer (``nn.MultiheadAttention``'s
    ``None`` weights, a ``PackedSequence``'s ``None`` indices)."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, Sequence) and not isinstance(out, str) and out:
        return [t for item in out for t in tensors_of(item, strict=strict)]
    if not strict:
        return []
    raise InputError(f"the model returns {type(out).__name__}; expected a tensor, a tuple of tensors or a dict of them")


def output_names(out: Any) -> list[str]:
    """The names the ONNX export gives a model's outputs: ``output`` for one tensor, the keys of a dict of
    tensors, ``output_0`` .. otherwise (a tuple, nested ones flattened)."""
    if isinstance(out, Tensor):
        return ["output"]
    if isinstance(out, Mapping) and all(isinstance(v, Tensor) for v in out.values()):
        return [str(k) for k in out]
    return [f"output_{i}" for i in range(len(tensors_of(out)))]


def outputs_of(out: Any) -> Outputs:
    """A model's return value (a tensor, a tuple of tensors or a dict of them) as named outputs."""
    return dict(zip(output_names(out), tensors_of(out)))


def as_returned(outputs: Outputs) -> Any:
    """``outputs`` in the structure the model returns them (the inverse of ``outputs_of``): what a
    user's loss or post-processing function is called with, from torch or from ONNX Runtime alike."""
    names = list(outputs)
    if names == ["output"]:
        return outputs["output"]
    if names == [f"output_{i}" for i in range(len(names))]:
        return tuple(outputs.values())
    return dict(outputs)


class Meter(Protocol):
    """A task's metrics over a data set, fed batch by batch (outputs on the CPU)."""

    def update(self, outputs: Outputs, targets: Any) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task(ABC):
    """A task: its loss, its metric (``metric`` names the value budgets judge; ``scale`` and ``unit``
    say how it is shown and in which units budgets give it: fractions as percent, 100 and ``%``),
    the class logits KD and parity compare, and how its targets are batched and moved."""

    name: ClassVar[str]
    metric: str
    metrics: tuple[str, ...]  # what a budget's metric may name; ``metric`` first
    higher_is_better: bool = True
    scale: float = 100.0
    unit: str = "%"
    has_logits: bool = False  # ``logits`` gives class logits (logits KD, per-position agreement, INT8's fallback)

    def __init__(self, config: TaskConfig, num_classes: int | None) -> None:
        self.config = config
        self.num_classes = num_classes
        self._functions: dict[str, Callable] = {}

    def quality(self, name: str | None = None) -> Metric:
        """The metric ``name`` (None: the task's own) as budgets and checks judge it."""
        name = name or self.metric
        if name not in self.metrics:
            raise InputError(f"task {self.name} measures {', '.join(self.metrics)}, not '{name}'")
        return Metric(name, self.scale, self.unit, self.higher_is_better)

    # -- training
    def loss(self, outputs: Outputs, targets: Any) -> Tensor:
        """The training loss of one batch: the user's ``task.loss`` when given, else the task's own."""
        if self.config.loss is None:
            return self.own_loss(outputs, targets)
        value = self.user_function("loss")(as_returned(outputs), targets)
        if not (isinstance(value, Tensor) and value.ndim == 0):
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise InputError(f"task.loss '{self.config.loss}' returned {shape}; it must return a scalar tensor")
        return value

    def user_function(self, key: str) -> Callable:
        """The callable ``task.<key>`` names, imported when first used (a config is validated, and a
        run folder's read, without importing code)."""
        if key not in self._functions:
            from spiralprune.pipeline.specs import resolve_callable

            self._functions[key] = resolve_callable(getattr(self.config, key), f"task.{key}")
        return self._functions[key]

    def own_loss(self, outputs: Outputs, targets: Any) -> Tensor:
        raise InputError(f"task {self.name} has no loss of its own; give task.loss")

    def forward_loss(self, model: torch.nn.Module, inputs: Tensor, targets: Any) -> tuple[Tensor, Outputs | None]:
        """``model``'s loss on one batch, and the outputs it was computed from (None where the model computes
        its loss itself): what training, batch-norm recalibration and the loss-aware criteria call."""
        outputs = outputs_of(model(inputs))
        return self.loss(outputs, targets), outputs

    def batch_loss(self, model: torch.nn.Module, batch: tuple[Tensor, Any]) -> Tensor:
        """``model``'s loss on one calibration batch (the loss-aware pruning criteria)."""
        inputs, targets = batch
        return self.forward_loss(model, inputs, targets)[0]

    def logits(self, outputs: Outputs) -> Tensor | None:
        """Class logits as ``[positions, classes]`` (per sample, or per pixel, ...) for logits KD and
        parity's agreement; None when the task has none."""
        return None

    # -- judging
    @abstractmethod
    def meter(self) -> Meter:
        """A fresh ``Meter`` of this task's metrics."""

    def check(self, outputs: Outputs, batch: int, what: str) -> None:
        """One line (an InputError) when ``outputs`` (of an example batch of ``batch`` inputs) cannot be this task's."""

    def compares_values(self, data_dependent: list[str]) -> bool:
        """Whether parity compares the outputs' values besides the agreement, for a graph with the
        ``data_dependent`` operators (``spiralprune.deploy.backends.onnx_io.data_dependent_ops``)."""
        return True

    def agreement(self, expected: Outputs, got: Outputs) -> float | None:
        """The share of positions where ``got`` (ONNX Runtime) picks ``expected``'s (torch's) class; None
        when the task has no class logits (parity then compares values only)."""
        a, b = self.logits(expected), self.logits(got)
        if a is None or b is None:
            return None
        return float((a.argmax(-1) == b.argmax(-1)).double().mean())

    # -- batching
    def collate(self, samples: list) -> Any:
        return default_collate(samples)

    def to_device(self, targets: Any, device: torch.device) -> Any:
        return targets.to(device, non_blocking=True)

    def count(self, targets: Any) -> int:
        return len(targets)

    def pick(self, outputs: Outputs) -> Tensor:
        """The output this task reads: ``task.output``, else ``out`` when there is one, else the first."""
        name = self.config.output or ("out" if "out" in outputs else next(iter(outputs)))
        if name not in outputs:
            raise InputError(f"task.output '{name}' is not an output of the model ({', '.join(outputs)})")
        return outputs[name]
