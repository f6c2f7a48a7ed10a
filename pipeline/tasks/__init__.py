"""What a model does and how it is judged: one ``Task`` per registry entry (``TASKS``).

A task owns everything below it that used to assume one logits output: the training loss (which
the distillation and the loss-aware pruning criteria call), the class logits that logits KD
compares, the quality metric (its name, direction and unit, which budgets, checks and reports use),
how a batch's targets are collated and moved, and what ONNX parity compares beyond the raw tensors.

A model's outputs reach a task as ``Outputs``: a name per tensor, in the order the model returns them
and the ONNX export names them (``output_names``): one tensor is ``output``, a tuple ``output_0`` ..,
a dict (torchvision's segmenters return ``{"out": ...}``) its keys.
"""

from __future__ import annotations

from spiral.pipeline.tasks.base import Meter, Metric, Outputs, Task, output_names, outputs_of
from spiral.pipeline.tasks.classification import Classification
from spiral.pipeline.tasks.config import TaskConfig
from spiral.pipeline.tasks.custom import Custom
from spiral.pipeline.tasks.detection import Detection
from spiral.pipeline.tasks.segmentation import Segmentation

TASKS: dict[str, type[Task]] = {
    "classification": Classification,
    "segmentation": Segmentation,
    "detection": Detection,
    "custom": Custom,
}


def build_task(config: TaskConfig = TaskConfig(), num_classes: int | None = None) -> Task:
    """The task ``config`` names, for a model of ``num_classes`` classes (the run's ``num_classes``; None:
    a classifier's, as wide as its logits). Without arguments: classification, today's default."""
    return TASKS[config.kind](config, num_classes)


__all__ = ["TASKS", "Meter", "Metric", "Outputs", "Task", "TaskConfig", "build_task", "output_names", "outputs_of"]
