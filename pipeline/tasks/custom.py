"""Any other task: the user's loss and metric (``task.loss``, ``task.metric``), e.g. regression,
embeddings or keypoints. The metric is shown and budgeted in its own units."""

from __future__ import annotations

from typing import Any

from spiralprune.core.errors import InputError
from spiralprune.pipeline.tasks.base import Outputs, Task, as_returned
from spiralprune.pipeline.tasks.config import TaskConfig


class _Average:
    """The user's per-batch metric averaged over the data set, each batch weighted by its samples."""

    def __init__(self, task: Custom) -> None:
        self.task, self.total, self.samples = task, 0.0, 0

    def update(self, outputs: Outputs, targets: Any) -> None:
        value = self.task.batch_metric(outputs, targets)
        count = self.task.count(targets)
        self.total += value * count
        self.samples += count

    def compute(self) -> dict[str, float]:
        if not self.samples:
            raise InputError("cannot evaluate on an empty validation set")
        return {self.task.metric: self.total / self.samples, "num_samples": self.samples}


class Custom(Task):
    name = "custom"
    scale = 1.0
    unit = ""

    def __init__(self, config: TaskConfig, num_classes: int | None) -> None:
        super().__init__(config, num_classes)
        self.metric = config.metric_name
        self.metrics = (config.metric_name,)
        self.higher_is_better = config.higher_is_better

    def batch_metric(self, outputs: Outputs, targets: Any) -> float:
        value = self.user_function("metric")(as_returned(outputs), targets)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"task.metric '{self.config.metric}' returned {type(value).__name__}; it must return "
                             "a number") from None

    def meter(self) -> _Average:
        return _Average(self)
