"""Semantic segmentation: per-pixel logits ``[batch, classes, H, W]`` against an ``[batch, H, W]`` label
map; per-pixel cross-entropy, mIoU and pixel accuracy (torchmetrics)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from spiralprune.core.errors import InputError
from spiralprune.pipeline.tasks.base import Outputs, Task


class _Pixels:
    """torchmetrics' multiclass Jaccard index (macro over the classes present: mIoU) and accuracy (micro)."""

    def __init__(self, task: Segmentation) -> None:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        self.task = task
        options = {"num_classes": task.num_classes, "ignore_index": task.config.ignore_index, "validate_args": False}
        self.iou = MulticlassJaccardIndex(average="macro", **options)
        self.accuracy = MulticlassAccuracy(average="micro", **options)
        self.samples = 0

    def update(self, outputs: Outputs, targets: Tensor) -> None:
        predictions = self.task.resized(self.task.pick(outputs), targets).argmax(1)
        self.iou.update(predictions, targets)
        self.accuracy.update(predictions, targets)
        self.samples += len(targets)

    def compute(self) -> dict[str, float]:
        if not self.samples:
            raise InputError("cannot evaluate on an empty validation set")
        return {"miou": float(self.iou.compute()), "pixel_accuracy": float(self.accuracy.compute()),
                "num_samples": self.samples}


class Segmentation(Task):
    name = "segmentation"
    metric = "miou"
    metrics = ("miou", "pixel_accuracy")
    has_logits = True

    def resized(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Logits at the label map's size (bilinear), as torchvision's segmenters upsample their own."""
        if logits.shape[-2:] != targets.shape[-2:]:
            logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def own_loss(self, outputs: Outputs, targets: Tensor) -> Tensor:
        logits = self.resized(self.pick(outputs), targets)
        return F.cross_entropy(logits.float(), targets, ignore_index=self.config.ignore_index)

    def logits(self, outputs: Outputs) -> Tensor:
        out = self.pick(outputs)
        return out.movedim(1, -1).reshape(-1, out.shape[1])

    def meter(self) -> _Pixels:
        return _Pixels(self)

    def check(self, outputs: Outputs, batch: int, what: str) -> None:
        out = self.pick(outputs)
        if out.ndim != 4 or out.shape[1] != self.num_classes:
            raise InputError(f"{what} outputs shape {list(out.shape)}; a segmenter's is [batch, num_classes="
                             f"{self.num_classes}, height, width]")

