"""A torchvision detector (SSDlite, ``weights=None``) through ``spiralprune prune``, ``export`` and ``gate``: its
graph ends in its own decoding and NMS (``task.postprocess: ...detection:torchvision_detections``), it loops
over its images (the export fixes its batch), and parity compares its detections, not its raw tensors.

Random weights give every anchor nearly the same score, and NMS then keeps one of several tied boxes as
each runtime's arithmetic happens to order them; the model here calibrates its batch norms on noise,
spreads its class logits, and turns suppression off (``nms_thresh=1.0``) with a score threshold, so that
the set of detections is decided by the network's values, which parity is about. The NMS operator stays
in the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from safetensors.torch import save_file

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.scenes import FASHION_MNIST, NUM_CLASSES
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import distill
from spiralprune.pipeline.export import loops_over_images
from spiralprune.pipeline.tasks import TaskConfig, build_task
from tests.pipeline.tasks.scenes_data import detection_rgb

pytestmark = pytest.mark.skipif(not FASHION_MNIST.exists(), reason="Debian's dataset-fashion-mnist is not installed")

KWARGS = {"num_classes": 3, "nms_thresh": 1.0, "score_thresh": 0.36, "topk_candidates": 4000,
          "detections_per_img": 4000}
SPEC = "torchvision:ssdlite320_mobilenet_v3_large?" + "&".join(f"{k}={v}" for k, v in KWARGS.items())
TASK = {"kind": "detection", "postprocess": "spiralprune.pipeline.tasks.detection:torchvision_detections"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, **KWARGS)
    for prediction in model.head.classification_head.module_list:
        torch.nn.init.normal_(prediction[1].weight, std=3.0)
    model.train()
    with torch.no_grad():  # batch-norm statistics of its own features, as a trained model has
        for _ in range(3):
            model.head(list(model.backbone(torch.rand(4, 3, 320, 320)).values()))
    path = tmp_path_factory.mktemp("ssdlite") / "weights.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))
    return path


def test_a_torchvision_detector_is_pruned_exported_and_gated(weights: Path, tmp_path: Path, capsys):
    pruned = tmp_path / "pruned"
    assert main(["prune", SPEC, "--weights", str(weights), "--input-shape", "1,3,64,64", "--ratio", "0.3",
                 "--out", str(pruned)]) == 0
    layers = capsys.readouterr().out
    assert "backbone.features.0.2.block.0.0" in layers  # the backbone shrank
    assert ".module_list.0.1 " not in layers  # the prediction layers (classes and boxes per anchor) did not

    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump({"task": TASK}))
    onnx_path = tmp_path / "ssdlite.onnx"
    assert main(["export", str(pruned), "--out", str(onnx_path), "--task", str(task_file)]) == 0
    out = capsys.readouterr().out
    assert "batch fixed at 1" in out  # asked for a dynamic batch: the graph unrolls its loop over the images
    assert "as detections (the graph has If, NonMaxSuppression, NonZero), agreement" in out and "passed" in out

    budget = tmp_path / "budget.yaml"
    budget.write_text(yaml.safe_dump({
        "task": TASK, "metric": {"name": "map", "min": 0}, "parity": {"samples": 4},
        "latency": {"max_ms": 60_000.0}, "profile": {"warmup_s": 0.05, "min_duration_s": 0.2, "max_duration_s": 2.0},
    }))
    report = tmp_path / "gate.json"
    # 8 validation scenes at batch 1 (the graph's); the checkpoint is exported and measured as deployed
    assert main(["gate", str(pruned), "--backend", "ort-cpu", "--budget", str(budget),
                 "--data", "tests.pipeline.tasks.scenes_data:detection_rgb", "--json", str(report)]) == 0
    checks = {check["name"]: check for check in json.loads(report.read_text())["checks"]}
    assert {"map.min", "parity.top1_agreement", "latency.p50.max_ms"} <= set(checks)
    assert "parity.max_abs_diff" not in checks  # no raw tensor of a graph ending in NMS is compared
    assert 0.0 <= checks["map.min"]["measured"] <= 100.0 and checks["parity.top1_agreement"]["measured"] >= 99.0


def test_a_torchvision_detector_loops_over_its_images():
    detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                           num_classes=3)
    assert loops_over_images(detector)
    assert not loops_over_images(torchvision.models.resnet18()) and not loops_over_images(torch.nn.LSTM(3, 3))


def test_detections_agree_by_their_scores():
    """A torch detection ONNX Runtime did not reproduce counts by its score: low-scoring ones near the
    threshold weigh little."""
    task = build_task(TaskConfig(**TASK), 3)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
    expected = {"output_0": boxes, "output_1": torch.tensor([0.9, 0.06, 0.04]), "output_2": torch.tensor([1, 2, 1])}
    got = {"output_0": boxes[[0, 2]], "output_1": torch.tensor([0.9, 0.04]), "output_2": torch.tensor([1, 2])}
    # the first is reproduced; the second is missing; the third's label differs
    assert task.agreement(expected, got) == pytest.approx(0.9)
    assert task.agreement(expected, expected) == 1.0


def test_a_torchvision_detector_trains_with_its_own_losses():
    """Without task.loss a detector trains on the losses it returns from ``model(images, targets)`` in train
    mode; the criteria ask an eval-mode model for them without touching its batch-norm statistics."""
    torch.manual_seed(0)
    # the scenes' labels are 1..10 with 0 torchvision's background
    detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                           num_classes=NUM_CLASSES + 1)
    task = build_task(TaskConfig(**TASK), NUM_CLASSES)
    train, val = detection_rgb()
    batch = task.collate([train[i] for i in range(4)])
    before = {name: value.clone() for name, value in detector.state_dict().items()}

    loss = task.batch_loss(detector.eval(), batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and not detector.training
    assert all(torch.equal(before[name], value) for name, value in detector.state_dict().items())

    result = distill(detector, None, train, val, DistillConfig(epochs=1, batch_size=4, optimizer="sgd", lr=0.01),
                     task=task)
    assert result.epochs_run == 1 and result.history[0]["loss"] > 0 and 0.0 <= result.best_val_quality <= 1.0
    assert not torch.equal(before["head.classification_head.module_list.0.1.weight"],
                           detector.state_dict()["head.classification_head.module_list.0.1.weight"])
    assert not detector.training


def test_a_detector_that_computes_no_loss_needs_task_loss():
    task = build_task(TaskConfig(**TASK), NUM_CLASSES)
    images, targets = torch.zeros(2, 3, 8, 8), [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    with pytest.raises(InputError, match="Conv2d.forward takes no targets: give task.loss"):
        task.forward_loss(torch.nn.Conv2d(3, 3, 1), images, targets)

    class Raw(torch.nn.Module):
        def forward(self, images, targets=None):
            return images.mean()
    with pytest.raises(InputError, match="Raw returned Tensor in train mode with targets, not a dict of scalar losses"):
        task.forward_loss(Raw(), images, targets)


@pytest.mark.parametrize("factory", ["retinanet", "fcos", "fasterrcnn"])
def test_torchvision_detectors_on_a_frozen_norm_backbone_are_pruned_exported_and_trained(factory: str, tmp_path: Path,
                                                                                         capsys):
    """torchvision's detection backbones normalise with FrozenBatchNorm2d (spiral's own pruner follows channels
    through it); RetinaNet declares its list of images in a type comment (its batch is fixed all the same);
    Faster R-CNN's region proposal network reads the FPN's channels by no path its outputs' gradients take
    (it detaches its proposals), and must shrink its inputs with them."""
    spec = f"tests.pipeline.tasks.torchvision_detectors:{factory}"
    pruned = tmp_path / "pruned"
    assert main(["prune", spec, "--input-shape", "1,3,64,64", "--ratio", "0.3", "--out", str(pruned)]) == 0
    layers = capsys.readouterr().out
    assert "backbone.body.2.block.0.0 " in layers  # a convolution with its frozen norm shrank
    if factory == "fasterrcnn":  # the FPN shrank, the proposal network's outputs (anchors, deltas) did not
        assert "backbone.fpn.layer_blocks.0.0 " in layers and "rpn.head" not in layers
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump({"task": TASK}))
    assert main(["export", str(pruned), "--out", str(tmp_path / "det.onnx"), "--task", str(task_file),
                 "--trust-model-code"]) == 0
    out = capsys.readouterr().out
    assert "batch fixed at 1" in out and "as detections" in out and "passed" in out

    from tests.pipeline.tasks import torchvision_detectors
    detector = getattr(torchvision_detectors, factory)().train()
    task = build_task(TaskConfig(**TASK), NUM_CLASSES)
    train, _ = detection_rgb()
    loss, outputs = task.forward_loss(detector, *task.collate([train[i] for i in range(2)]))
    assert outputs is None and loss.ndim == 0 and torch.isfinite(loss)
