"""Classification: one logits output ``[batch, num_classes]``, cross-entropy, top-1 accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from spiralprune.core.errors import InputError
from spiralprune.pipeline.metrics import classification_metrics
from spiralprune.pipeline.tasks.base import Outputs, Task


class _TopOne:
    def __init__(self, task: Classification) -> None:
        self.task, self.labels, self.predictions, self.width = task, [], [], 0

    def update(self, outputs: Outputs, targets: Any) -> None:
        logits = self.task.pick(outputs)
        self.width = logits.shape[-1]
        self.predictions.append(logits.argmax(-1).numpy())
        self.labels.append(np.asarray(targets))

    def compute(self) -> dict[str, float]:
        if not self.labels:
            raise InputError("cannot evaluate on an empty validation set")
        return classification_metrics(np.concatenate(self.labels), np.concatenate(self.predictions),
                                      self.task.num_classes or self.width)


class Classification(Task):
    """``num_classes`` None: as many as the logits are wide (a model evaluated without a run config)."""

    name = "classification"
    metric = "accuracy"
    metrics = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    has_logits = True

    def own_loss(self, outputs: Outputs, targets: Tensor) -> Tensor:
        return F.cross_entropy(self.pick(outputs).float(), targets)

    def logits(self, outputs: Outputs) -> Tensor:
        return self.pick(outputs)

    def meter(self) -> _TopOne:
        return _TopOne(self)

    def check(self, outputs: Outputs, batch: int, what: str) -> None:
        out = self.pick(outputs)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise InputError(f"{what} outputs shape {list(out.shape)}; expected [batch, num_classes={self.num_classes}]")
