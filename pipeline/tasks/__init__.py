"""What a model does and how it is judged: one ``Task`` per registry entry (``TASKS``).

A task owns everything below it that used to assume one logits output: the training loss (which
the distillation and the loss-aware pruning criteria call), the class logits that logits KD
compares, the quality metric (its name, direction and unit, which budgets, checks and reports use),
how a batch's targets are collated and moved, and what ONNX parity compares beyond the raw tensors.

A model's outputs reach a task as ``Outputs``: a name per tensor, in the order the model returns them
and the ONNX export names them (``output_names``): one tensor is ``output``, a tuple ``output_0`` ..,
a dict (torchvision's segmenters return ``{"out": ...}``) its keys.

The names below are imported from their modules on first use (PEP 562), so that importing
``spiralprune.pipeline.tasks.config`` (a run config, a command's ``--help``) imports no torch.
"""

import importlib

_MODULES = {
    "Meter": "base", "Metric": "metric", "Outputs": "base", "Task": "base", "output_names": "base", "outputs_of": "base",
    "tensors_of": "base",
    "TaskConfig": "config", "TASKS": "registry", "build_task": "registry",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> object:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
