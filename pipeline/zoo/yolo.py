"""A small YOLO-style single-stage, anchor-free detector that prunes with Torch-Pruning and exports to ONNX.

Layout (YOLOv8-like, built only from plain ops: Conv2d, BatchNorm2d, SiLU, MaxPool2d, nearest Upsample,
``torch.cat`` and ``+``, so Torch-Pruning's dependency graph and ONNX opset 17 both take it):

- backbone: a strided 3x3 stem, then four stages of (strided 3x3 conv, C2f block); an SPPF block on the
  last. A C2f block's "split" is two 1x1 convolutions rather than ``chunk`` of one (as Torch-Pruning's
  YOLOv8 example does), which computes the same function and keeps channel dependencies simple.
- neck: a PAN over strides 8, 16 and 32 (top-down nearest upsample + concat + C2f, then bottom-up
  strided conv + concat + C2f).
- head: decoupled per level, two 3x3 convs then a 1x1 prediction conv for the box and, separately, for
  the classes. ``model.prediction_layers`` lists the six prediction convs (leave them out of pruning:
  their output channels are the output format).

``forward(images)`` returns one raw tensor per level, ``[B, 4 + num_classes, H / s, W / s]`` for strides
``s`` = 8, 16, 32: channels 0-3 are the box's distances (left, top, right, bottom) from the location's
center, *before* ``softplus`` and in units of the level's stride; the rest are class logits (before
the sigmoid). Nothing is decoded in the graph: ``yolo_decode`` does it on the host (softplus, scale by
the stride, sigmoid, score threshold, class-wise NMS), and ``yolo_loss`` trains it (FCOS-style center
sampling, sigmoid focal loss on the classes, GIoU on the positives' boxes). Labels follow torchvision:
1..num_classes, 0 being the background (never a box's label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

STRIDES = (8, 16, 32)
CLASS_PRIOR = 0.01  # initial class probability (RetinaNet's prior): keeps the focal loss sane at step 0
INITIAL_DISTANCE = 2.0  # initial box distances, in strides, after softplus


class ConvBNAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU, "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 ConvBNAct, with a residual add when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels, 3)
        self.cv2 = ConvBNAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """CSP block: two 1x1 halves, ``depth`` bottlenecks chained on the second, every intermediate
    concatenated and fused by a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = max(out_channels // 2, 1)
        self.cv0 = ConvBNAct(in_channels, hidden)
        self.cv1 = ConvBNAct(in_channels, hidden)
        self.blocks = nn.ModuleList(Bottleneck(hidden, shortcut) for _ in range(depth))
        self.cv2 = ConvBNAct((2 + depth) * hidden, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        ys = [self.cv0(x), self.cv1(x)]
        for block in self.blocks:
            ys.append(block(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max pools (stride 1) concatenated."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.cv1 = ConvBNAct(channels, hidden)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv2 = ConvBNAct(4 * hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class DecoupledHead(nn.Module):
    """One level's head: a box branch and a class branch, each two 3x3 convs and a 1x1 prediction conv."""

    def __init__(self, in_channels: int, box_channels: int, class_channels: int, num_classes: int) -> None:
        super().__init__()
        self.box = nn.Sequential(ConvBNAct(in_channels, box_channels, 3), ConvBNAct(box_channels, box_channels, 3))
        self.cls = nn.Sequential(
            ConvBNAct(in_channels, class_channels, 3), ConvBNAct(class_channels, class_channels, 3)
        )
        self.box_pred = nn.Conv2d(box_channels, 4, 1)
        self.cls_pred = nn.Conv2d(class_channels, num_classes, 1)
        nn.init.normal_(self.box_pred.weight, std=0.01)
        nn.init.constant_(self.box_pred.bias, math.log(math.expm1(INITIAL_DISTANCE)))  # softplus^-1
        nn.init.normal_(self.cls_pred.weight, std=0.01)
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.box_pred(self.box(x)), self.cls_pred(self.cls(x))], 1)


class YoloDetector(nn.Module):
    """See the module docstring. ``strides`` (8, 16, 32) and ``num_classes`` are attributes."""

    strides = STRIDES

    def __init__(self, num_classes: int, width: int, in_channels: int, depth: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        c1, c2, c3, c4, c5 = (width * 2**i for i in range(5))
        self.stem = ConvBNAct(in_channels, c1, 3, 2)  # stride 2
        self.stage2 = nn.Sequential(ConvBNAct(c1, c2, 3, 2), C2f(c2, c2, depth))  # stride 4
        self.stage3 = nn.Sequential(ConvBNAct(c2, c3, 3, 2), C2f(c3, c3, depth))  # stride 8
        self.stage4 = nn.Sequential(ConvBNAct(c3, c4, 3, 2), C2f(c4, c4, depth))  # stride 16
        self.stage5 = nn.Sequential(ConvBNAct(c4, c5, 3, 2), C2f(c5, c5, depth), SPPF(c5))  # stride 32
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = C2f(c5 + c4, c4, depth, shortcut=False)
        self.top_down3 = C2f(c4 + c3, c3, depth, shortcut=False)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, depth, shortcut=False)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, depth, shortcut=False)
        box_channels = max(16, c3 // 4)
        class_channels = max(c3, min(num_classes, 100))
        self.heads = nn.ModuleList(DecoupledHead(c, box_channels, class_channels, num_classes) for c in (c3, c4, c5))

    @property
    def prediction_layers(self) -> list[nn.Module]:
        """The final 1x1 convolutions (box and classes, per level): their output channels are the format."""
        return [layer for head in self.heads for layer in (head.box_pred, head.cls_pred)]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p3 = self.stage3(self.stage2(self.stem(images)))
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        n4 = self.top_down4(torch.cat([self.upsample(p5), p4], 1))
        o3 = self.top_down3(torch.cat([self.upsample(n4), p3], 1))
        o4 = self.bottom_up4(torch.cat([self.down3(o3), n4], 1))
        o5 = self.bottom_up5(torch.cat([self.down4(o4), p5], 1))
        return tuple(head(x) for head, x in zip(self.heads, (o3, o4, o5)))  # type: ignore[return-value]


def yolo_detector(num_classes: int = 10, width: int = 16, in_channels: int = 1, depth: int = 1) -> nn.Module:
    """A YOLOv8-like detector with channels ``width * (1, 2, 4, 8, 16)`` and ``depth`` bottlenecks per C2f.

    Inputs are ``[B, in_channels, H, W]`` with H and W divisible by 32 (64x64 grayscale by default);
    the output is a tuple of three ``[B, 4 + num_classes, H/s, W/s]`` tensors for s = 8, 16, 32.
    """
    if num_classes < 1 or width < 1 or in_channels < 1 or depth < 1:
        raise ValueError("yolo_detector needs num_classes, width, in_channels and depth of at least 1")
    return YoloDetector(num_classes, width, in_channels, depth)


def _level_strides(outputs: Sequence[Tensor]) -> list[float]:
    """Each level's stride, from its height relative to the first level's (stride 8)."""
    if len(outputs) == 0:
        raise ValueError("no detector outputs")
    height0 = outputs[0].shape[-2]
    return [STRIDES[0] * height0 / out.shape[-2] for out in outputs]


def _flatten(outputs: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, A, 4 + C]`` predictions over all levels' locations, their centers ``[A, 2]`` (x, y in
    pixels) and strides ``[A]``."""
    strides = _level_strides(outputs)
    predictions, centers, location_strides = [], [], []
    for out, stride in zip(outputs, strides):
        batch, channels, height, width = out.shape
        predictions.append(out.reshape(batch, channels, height * width).transpose(1, 2))
        ys, xs = torch.meshgrid(
            torch.arange(height, device=out.device, dtype=torch.float32),
            torch.arange(width, device=out.device, dtype=torch.float32),
            indexing="ij",
        )
        centers.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).add_(0.5).mul_(stride))
        location_strides.append(torch.full((height * width,), stride, device=out.device))
    return torch.cat(predictions, 1).float(), torch.cat(centers), torch.cat(location_strides)


def _boxes(distances: Tensor, centers: Tensor, strides: Tensor) -> Tensor:
    """xyxy boxes from raw (pre-softplus, in strides) l, t, r, b distances."""
    d = F.softplus(distances) * strides[:, None]
    return torch.cat([centers - d[:, :2], centers + d[:, 2:]], 1)


def yolo_loss(
    outputs: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    *,
    center_radius: float = 2.5,
    box_weight: float = 2.0,
) -> Tensor:
    """Sigmoid focal loss over every location's class logits plus ``box_weight`` x GIoU loss on the
    positives' boxes, both summed and divided by the number of positives (at least 1).

    ``targets[i]``: ``{"boxes": float [K, 4] xyxy in input pixels, "labels": int64 [K] in 1..num_classes}``
    (K may be 0). A location is positive for a box when its center lies inside the box and within
    ``center_radius`` strides of the box's center, on any level; a location claimed by several boxes
    takes the smallest. A box that no location's center falls in (smaller than a stride) gets the
    stride-8 location nearest its center, so every box trains something.
    """
    if len(outputs) == 0 or len(targets) != outputs[0].shape[0]:
        raise ValueError(f"yolo_loss needs one target per image: {len(targets)} targets for "
                         f"{outputs[0].shape[0] if len(outputs) else 0} images")
    predictions, centers, strides = _flatten(outputs)
    num_classes = predictions.shape[-1] - 4
    level0 = outputs[0].shape[-2] * outputs[0].shape[-1]
    class_targets = torch.zeros_like(predictions[..., 4:])
    box_losses, positives = [], 0
    for index, target in enumerate(targets):
        boxes = target["boxes"].to(predictions.device, torch.float32).reshape(-1, 4)
        labels = target["labels"].to(predictions.device).reshape(-1)
        if len(boxes) == 0:
            continue
        if len(labels) != len(boxes):
            raise ValueError(f"target {index}: {len(boxes)} boxes but {len(labels)} labels")
        if int(labels.min()) < 1 or int(labels.max()) > num_classes:
            raise ValueError(f"target {index}: labels must be in 1..{num_classes} (0 is the background)")
        x, y = centers[:, 0:1], centers[:, 1:2]  # [A, 1]
        inside = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1).amin(-1) > 0
        box_centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        radius = center_radius * strides[:, None]
        near = ((x - box_centers[:, 0]).abs() < radius) & ((y - box_centers[:, 1]).abs() < radius)
        eligible = inside & near  # [A, K]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        cost = area.expand_as(eligible).masked_fill(~eligible, math.inf)
        best, matched = cost.min(1)
        positive = torch.isfinite(best)
        orphans = (~eligible.any(0)).nonzero().flatten()
        if len(orphans):
            distance = (centers[:level0, None, :] - box_centers[None, orphans, :]).square().sum(-1)  # [A0, k]
            nearest = distance.argmin(0)
            positive[nearest] = True
            matched[nearest] = orphans
        where = positive.nonzero().flatten()
        positives += len(where)
        class_targets[index, where, labels[matched[where]] - 1] = 1.0
        predicted = _boxes(predictions[index, where, :4], centers[where], strides[where])
        box_losses.append(generalized_box_iou_loss(predicted, boxes[matched[where]], reduction="sum"))
    normalizer = max(positives, 1)
    class_loss = sigmoid_focal_loss(predictions[..., 4:], class_targets, reduction="sum")
    box_loss = torch.stack(box_losses).sum() if box_losses else predictions[..., :4].sum() * 0.0
    return (class_loss + box_weight * box_loss) / normalizer


@torch.no_grad()
def yolo_decode(
    outputs: Sequence[Tensor],
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
) -> list[dict[str, Tensor]]:
    """Per image ``{"boxes": float [N, 4] xyxy in input pixels, "scores": float [N] (descending),
    "labels": int64 [N] in 1..num_classes}``: every (location, class) scoring above ``score_threshold``
    (at most ``pre_nms_top_k`` of them), class-wise NMS at ``iou_threshold``, the best ``max_detections``.

    ``outputs`` are the model's three raw tensors (torch, or numpy as ONNX Runtime returns them); the
    strides come from each level's size relative to the first (stride 8), the input size is the first
    level's size times 8, and boxes are clipped to it.
    """
    outputs = [torch.as_tensor(out) for out in outputs]
    predictions, centers, strides = _flatten(outputs)
    height, width = outputs[0].shape[-2] * STRIDES[0], outputs[0].shape[-1] * STRIDES[0]
    num_classes = predictions.shape[-1] - 4
    results = []
    for prediction in predictions:
        scores = prediction[:, 4:].sigmoid().flatten()
        keep = (scores > score_threshold).nonzero().flatten()
        if len(keep) > pre_nms_top_k:
            keep = keep[scores[keep].topk(pre_nms_top_k).indices]
        scores = scores[keep]
        locations, classes = keep // num_classes, keep % num_classes
        boxes = _boxes(prediction[locations, :4], centers[locations], strides[locations])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        kept = batched_nms(boxes, scores, classes, iou_threshold)[:max_detections]
        results.append({"boxes": boxes[kept], "scores": scores[kept], "labels": classes[kept].to(torch.int64) + 1})
    return results
