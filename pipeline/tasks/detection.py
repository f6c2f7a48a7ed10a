"""Object detection: raw head outputs in the graph, decoded on the host by the user's ``task.postprocess``
(as deployments with TensorRT often do), or a graph that ends in the model's own decoding and NMS
(torchvision's detectors); trained with ``task.loss``, else with the losses the model computes itself
(torchvision's, in train mode); COCO mAP through torchmetrics'
``MeanAveragePrecision`` (pycocotools backend: ``pip install 'spiralprune[detection]'``). The host's
post-processing is not in the measured latency: its median per image (batch 1, ``postprocess_ms``) is
reported with the metrics, as the speech case reports its features.

Targets are torchvision's: one dict per image, ``boxes`` ``[K, 4]`` xyxy in input pixels and ``labels``
``[K]`` int64; detections add ``scores``.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.tasks.base import Outputs, Task, as_returned

# torchvision's detection reference counts a detection as reproduced at this IoU; parity asks more.
PARITY_IOU = 0.9
# Images whose post-processing is timed alone (batch 1, as a deployment decodes each frame): its median
# is reported beside the network's latency, which does not include it.
TIMED_IMAGES = 32


def torchvision_detections(outputs: tuple[Tensor, ...]) -> list[dict[str, Tensor]]:
    """``task.postprocess`` for torchvision's detectors (SSD, SSDlite, RetinaNet, FCOS, Faster R-CNN), whose
    graph ends in their own decoding and NMS: in eval mode they return one dict of boxes, scores and labels
    per image, which the export flattens to three outputs per image (``output_0`` .. in that order)."""
    if len(outputs) % 3:
        raise InputError(f"a torchvision detector returns boxes, scores and labels per image; got {len(outputs)} "
                         "outputs")
    return [dict(zip(("boxes", "scores", "labels"), outputs[i : i + 3])) for i in range(0, len(outputs), 3)]


# Modules whose train mode changes what a forward computes or keeps (statistics, dropped units): the
# loss-aware criteria ask an eval-mode model for its own losses with these left in eval mode.
_EVAL_KEPT = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.modules.dropout._DropoutNd)


@contextmanager
def _computing_losses(model: nn.Module) -> Iterator[None]:
    """``model`` in train mode, where torchvision's detectors compute their losses; a model in eval mode
    (the pruning criteria's) keeps its norms and dropout in eval mode, so asking for its losses leaves its
    statistics and its arithmetic as they were."""
    if model.training:
        yield
        return
    modes = {m: m.training for m in model.modules()}
    for m in model.modules():
        m.training = not isinstance(m, _EVAL_KEPT)
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _takes_targets(model: nn.Module) -> bool:
    parameters = inspect.signature(model.forward).parameters.values()
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters) >= 2 or any(
        p.kind == p.VAR_POSITIONAL for p in parameters)


class _MeanAveragePrecision:
    def __init__(self, task: Detection) -> None:
        try:
            from torchmetrics.detection import MeanAveragePrecision

            self.map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
            # COCO's mAP reads each image's 100 best detections; torchvision's detectors keep up to 300.
            self.map.warn_on_many_detections = False
        except ModuleNotFoundError as exc:  # torchmetrics says which backend is missing
            raise InputError(f"task detection needs pycocotools: pip install 'spiralprune[detection]' ({exc})") from None
        self.task, self.samples, self.seconds = task, 0, []

    def update(self, outputs: Outputs, targets: list[dict[str, Tensor]]) -> None:
        self.map.update(self.task.detections(outputs), targets)
        for i in range(min(len(targets), TIMED_IMAGES - len(self.seconds))):
            one = {name: value[i : i + 1] for name, value in outputs.items()}
            start = time.perf_counter()
            self.task.detections(one)
            self.seconds.append(time.perf_counter() - start)
        self.samples += len(targets)

    def compute(self) -> dict[str, float]:
        if not self.samples:
            raise InputError("cannot evaluate on an empty validation set")
        result = self.map.compute()
        return {"map": float(result["map"]), "map_50": float(result["map_50"]), "map_75": float(result["map_75"]),
                "num_samples": self.samples, "postprocess_ms": 1000 * statistics.median(self.seconds)}


class Detection(Task):
    name = "detection"
    metric = "map"
    metrics = ("map", "map_50", "map_75")

    def detections(self, outputs: Outputs) -> list[dict[str, Tensor]]:
        """The post-processed detections of a batch: one dict of boxes, scores and labels per image."""
        with torch.no_grad():
            found = self.user_function("postprocess")(as_returned(outputs))
        if not (isinstance(found, list) and all(isinstance(d, dict) and {"boxes", "scores", "labels"} <= set(d)
                                                for d in found)):
            raise InputError(f"task.postprocess '{self.config.postprocess}' must return a list with one dict of "
                             "boxes, scores and labels per image")
        return [{k: d[k].detach().cpu() for k in ("boxes", "scores", "labels")} for d in found]

    def forward_loss(self, model: nn.Module, inputs: Tensor, targets: Any) -> tuple[Tensor, Outputs | None]:
        """With ``task.loss``, that loss of the model's outputs; without, the losses the model computes itself,
        summed: torchvision's detectors (and models written like them) return a dict of them from
        ``model(images, targets)`` in train mode."""
        if self.config.loss is not None:
            return super().forward_loss(model, inputs, targets)
        own = ("task detection without task.loss trains with the model's own losses, the dict that "
               "torchvision's detectors return from model(images, targets) in train mode")
        if not _takes_targets(model):
            raise InputError(f"{own}; {type(model).__name__}.forward takes no targets: give task.loss")
        with _computing_losses(model):
            losses = model(inputs, targets)
        if not (isinstance(losses, Mapping) and losses
                and all(isinstance(v, Tensor) and v.ndim == 0 for v in losses.values())):
            raise InputError(f"{own}; {type(model).__name__} returned {type(losses).__name__} in train mode with "
                             "targets, not a dict of scalar losses: give task.loss")
        return sum(losses.values()), None  # type: ignore[return-value]

    def meter(self) -> _MeanAveragePrecision:
        return _MeanAveragePrecision(self)

    def check(self, outputs: Outputs, batch: int, what: str) -> None:
        try:
            found = self.detections(outputs)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"task.postprocess '{self.config.postprocess}' fails on the outputs of {what} "
                             f"({', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())}): {exc}") from None
        if len(found) != batch:
            raise InputError(f"task.postprocess '{self.config.postprocess}' returned {len(found)} images' detections "
                             f"for a batch of {batch}")

    def compares_values(self, data_dependent: list[str]) -> bool:
        """A graph that ends in its own NMS (a torchvision detector's) keeps a number of boxes, and an order,
        that near-equal scores decide: its outputs are compared as detections, through the agreement alone."""
        return not data_dependent

    def agreement(self, expected: Outputs, got: Outputs) -> float | None:
        """The share of torch's detections that ONNX Runtime's reproduce (same label, IoU >= 0.9), each
        weighed by its score: near the score threshold, and where NMS keeps one of near-equal boxes, two
        correct runtimes keep different low-scoring detections (torchvision's SSDlite, the same boxes and
        scores at the top, 228 detections against 240), which weigh in mAP as little as their scores; 1.0
        when torch detects nothing."""
        from torchvision.ops import box_iou

        matched = total = 0.0
        for a, b in zip(self.detections(expected), self.detections(got)):
            weights = a["scores"].double().clamp(min=0)
            total += float(weights.sum())
            if len(a["boxes"]) and len(b["boxes"]):
                same = (box_iou(a["boxes"], b["boxes"]) >= PARITY_IOU) & (a["labels"][:, None] == b["labels"][None])
                matched += float(weights[same.any(1)].sum())
        return matched / total if total else 1.0

    def collate(self, samples: list) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """Images stacked, targets a list (their box counts differ), as torchvision's detection references do."""
        images, targets = zip(*samples)
        return torch.stack(list(images)), [{k: torch.as_tensor(v) for k, v in t.items()} for t in targets]

    def to_device(self, targets: list[dict[str, Tensor]], device: torch.device) -> list[dict[str, Tensor]]:
        return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
