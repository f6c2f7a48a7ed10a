"""Small torchvision RetinaNet and FCOS for the tests: a MobileNetV3-small FPN backbone normalised with
``FrozenBatchNorm2d`` (as every torchvision detection backbone is), random weights, 64x64 images, and
suppression turned off with a score threshold (``nms_thresh=1.0``; see test_torchvision_detector.py)."""

from __future__ import annotations

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone

SETTINGS = {"min_size": 64, "max_size": 64, "score_thresh": 0.2, "nms_thresh": 1.0, "detections_per_img": 300}


def _backbone() -> nn.Module:
    return mobilenet_backbone(backbone_name="mobilenet_v3_small", weights=None, fpn=True, trainable_layers=6)


def retinanet(num_classes: int = 11) -> RetinaNet:
    anchors = AnchorGenerator(((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3)
    return RetinaNet(_backbone(), num_classes, anchor_generator=anchors, **SETTINGS)


def fcos(num_classes: int = 11) -> FCOS:
    anchors = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)
    return FCOS(_backbone(), num_classes, anchor_generator=anchors, **SETTINGS)


def fasterrcnn(num_classes: int = 11) -> FasterRCNN:
    """Two-stage: a region proposal network, then RoI heads (a two-layer MLP and the class and box predictors)."""
    anchors = AnchorGenerator(((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3)
    return FasterRCNN(_backbone(), num_classes, rpn_anchor_generator=anchors, box_score_thresh=0.2, box_nms_thresh=1.0,
                      box_detections_per_img=300, min_size=64, max_size=64, rpn_pre_nms_top_n_test=200,
                      rpn_post_nms_top_n_test=100)
