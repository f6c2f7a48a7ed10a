"""The task registry: one ``Task`` class per kind a run config's ``task.kind`` names."""

from __future__ import annotations

from spiralprune.pipeline.tasks.base import Task
from spiralprune.pipeline.tasks.classification import Classification
from spiralprune.pipeline.tasks.config import TaskConfig
from spiralprune.pipeline.tasks.custom import Custom
from spiralprune.pipeline.tasks.detection import Detection
from spiralprune.pipeline.tasks.segmentation import Segmentation

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
