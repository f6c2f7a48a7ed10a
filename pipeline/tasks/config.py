"""The ``task:`` block of a run config, a gate's and ``spiralprune quantize``'s: which task, and its parts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TaskConfig(BaseModel):
    """``kind``: ``classification`` (top-1 accuracy; the default), ``segmentation`` (per-pixel
    cross-entropy; mIoU and pixel accuracy), ``detection`` (mAP@0.5:0.95 and mAP@0.5, COCO-style) or
    ``custom``.

    ``loss`` (``package.module:fn``, called ``fn(outputs, targets)`` with the model's outputs as it
    returns them, a scalar tensor back) replaces the task's own loss; custom needs one. Detection's own
    loss is the model's: the dict of losses torchvision's detectors return from ``model(images, targets)``
    in train mode, summed; a model that does not compute its losses needs ``loss`` where it trains.
    ``postprocess`` (detection: ``fn(outputs) -> [{"boxes", "scores", "labels"}]`` per image, decode
    and NMS on the host) turns the raw head outputs the graph ends with into detections;
    ``spiralprune.pipeline.tasks.detection:torchvision_detections`` for a torchvision detector, whose
    graph ends in its own NMS.
    ``metric`` (custom: ``fn(outputs, targets) -> float`` per batch, averaged over batches weighted by
    their size) with ``metric_name`` and ``higher_is_better``. ``ignore_index``: segmentation's label
    that neither the loss nor the metric counts. ``output``: the output the task reads (a name of
    ``spiralprune.pipeline.tasks.output_names``); by default ``out`` when the model returns one, else the first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["classification", "segmentation", "detection", "custom"] = "classification"
    loss: str | None = None
    postprocess: str | None = None
    metric: str | None = None
    metric_name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    higher_is_better: bool = True
    ignore_index: int = 255
    output: str | None = None

    @model_validator(mode="after")
    def _parts(self) -> TaskConfig:
        needs = {"detection": ("postprocess",), "custom": ("loss", "metric", "metric_name")}.get(self.kind, ())
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(f"task {self.kind} needs {name}")
        if self.kind != "custom":
            for name in ("metric", "metric_name"):
                if getattr(self, name) is not None:
                    raise ValueError(f"task.{name} is for task custom; {self.kind} has its own metric")
            if not self.higher_is_better:
                raise ValueError(f"task.higher_is_better is for task custom; {self.kind}'s metric is higher-is-better")
        if self.kind != "detection" and self.postprocess is not None:
            raise ValueError("task.postprocess is for task detection")
        return self
