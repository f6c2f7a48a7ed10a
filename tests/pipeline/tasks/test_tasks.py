"""``spiralprune.pipeline.tasks``: every task on a real small model, through training's loss, the metric, ONNX
export and parity; budgets in the task's terms; bad task settings one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import ParityBudget
from spiralprune.pipeline.acceptance import Evidence, QualityDrop, QualityLimit, decide
from spiralprune.pipeline.casestudies.scenes import FASHION_MNIST, SEGMENTATION_CLASSES, DetectionScenes, SegmentationScenes, load_scenes
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import distill
from spiralprune.pipeline.evaluate import evaluate_model, evaluate_onnx
from spiralprune.pipeline.export import check_parity, export_onnx
from spiralprune.pipeline.prune import PrunableModel
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.criteria import CRITERIA
from spiralprune.pipeline.prune.group import Calibration
from spiralprune.pipeline.tasks import TASKS, TaskConfig, build_task, output_names, outputs_of, tensors_of
from spiralprune.pipeline.zoo.segmenter import lraspp_grey
from spiralprune.pipeline.zoo.yolo import yolo_detector

pytestmark = pytest.mark.skipif(not FASHION_MNIST.exists(), reason="Debian's dataset-fashion-mnist is not installed")

YOLO = {"kind": "detection", "loss": "spiralprune.pipeline.zoo.yolo:yolo_loss",
        "postprocess": "spiralprune.pipeline.zoo.yolo:yolo_decode"}
CUSTOM = {"kind": "custom", "loss": "tests.pipeline.tasks.custom_task:mse", "metric": "tests.pipeline.tasks.custom_task:mae",
          "metric_name": "mae", "higher_is_better": False}


def _segmenter() -> nn.Module:
    torch.manual_seed(0)
    return lraspp_grey(SEGMENTATION_CLASSES)


class _Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x)


def _case(kind: str):
    """(task, model, data set) of each task on real data: scenes for segmentation and detection."""
    torch.manual_seed(0)
    if kind == "segmentation":
        return build_task(TaskConfig(kind=kind), SEGMENTATION_CLASSES), _segmenter(), SegmentationScenes(
            load_scenes("val", 16, size=64))
    if kind == "detection":
        return build_task(TaskConfig(**YOLO), 10), yolo_detector(width=8), DetectionScenes(load_scenes("val", 16, size=64))
    images = torch.randn(32, 1, 16, 16)
    if kind == "custom":
        return build_task(TaskConfig(**CUSTOM)), _Regressor(), TensorDataset(images, images.mean((1, 2, 3)))
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return build_task(TaskConfig(), 3), model, TensorDataset(images, torch.randint(0, 3, (32,)))


@pytest.mark.parametrize("kind", TASKS)
def test_every_task_trains_measures_exports_and_checks_parity(kind: str, tmp_path: Path):
    task, model, data = _case(kind)
    inputs, targets = task.collate([data[i] for i in range(4)])
    outputs = outputs_of(model.eval()(inputs))
    task.check(outputs, 4, "the model")
    loss, _ = task.forward_loss(model.train(), inputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()

    result = distill(model, None, data, data, DistillConfig(epochs=1, batch_size=8, lr=1e-3, optimizer="adamw",
                                                            bn_recalibration_batches=0), task=task)
    torch_metrics = evaluate_model(model, data, task)
    assert task.metric in torch_metrics and result.best_val_quality == pytest.approx(torch_metrics[task.metric])

    path = export_onnx(model, inputs[:1], tmp_path / "model.onnx")
    import onnx

    assert [o.name for o in onnx.load(str(path)).graph.output] == output_names(model.eval()(inputs[:1]))
    parity = check_parity(model, path, inputs, ParityBudget(atol=1e-3, min_top1_agreement=0.9), task=task)
    assert parity.passed and set(parity.outputs) == set(outputs)
    assert (parity.top1_agreement is None) == (kind == "custom")
    onnx_metrics = evaluate_onnx(path, data, task)
    assert onnx_metrics[task.metric] == pytest.approx(torch_metrics[task.metric], abs=0.02)
    assert (kind == "detection") == ("postprocess_ms" in onnx_metrics)  # the host's decode + NMS, timed apart


@pytest.mark.parametrize("kind", ["segmentation", "detection"])
def test_loss_aware_criteria_score_with_the_task_loss(kind: str):
    task, model, data = _case(kind)
    batch = task.collate([data[i] for i in range(4)])
    prunable = PrunableModel(model.eval(), batch[0][:1])
    calibration = Calibration([batch], task.batch_loss)
    scores = prunable.scored(PruneConfig(criterion="taylor-group"), calibration)
    assert any(s is not None and bool((s > 0).any()) for _, s in scores)
    rises = prunable.block_rises(calibration)  # residual blocks removed whole, judged by the task's loss
    assert len(rises) == len(prunable.blocks) and all(r >= 0 for r in rises)
    assert kind != "detection" or prunable.blocks  # the detector's bottlenecks were weighed
    assert CRITERIA["taylor-group"].needs_calibration


def test_the_detector_prediction_layers_keep_their_outputs_when_pruned():
    """The outputs' own convs are found from the outputs: a plan of every group leaves them whole."""
    task, model, data = _case("detection")
    example = task.collate([data[0]])[0]
    prunable = PrunableModel(model.eval(), example)
    roots = {g.root for g in prunable.groups_of(PruneConfig())}
    names = {module: name for name, module in model.named_modules()}
    assert not roots & {names[m] for m in model.prediction_layers}


def test_segmentation_metrics_are_torchmetrics_miou_and_pixel_accuracy():
    task = build_task(TaskConfig(kind="segmentation"), 3)
    meter = task.meter()
    labels = torch.tensor([[[0, 1], [2, 2]]])
    logits = nn.functional.one_hot(torch.tensor([[[0, 1], [2, 1]]]), 3).movedim(-1, 1).float()
    meter.update({"out": logits}, labels)
    result = meter.compute()
    # class 0: 1/1, class 1: 1/2, class 2: 1/2 -> mIoU 2/3; 3 of 4 pixels right
    assert result["miou"] == pytest.approx(2 / 3) and result["pixel_accuracy"] == pytest.approx(0.75)


def test_a_model_s_tensors_are_flattened_as_the_export_does_and_anything_else_is_one_line_or_left_out():
    """``tensors_of``: the outputs as the ONNX export names them (``outputs_of``), and as the pruner's hooks see
    a layer's (``strict=False``: an attention layer's ``(output, None)`` when no weights are asked for)."""
    a, h, c = torch.zeros(2, 3), torch.ones(1, 3), torch.full((1, 3), 2.0)
    assert list(outputs_of((a, (h, c)))) == ["output_0", "output_1", "output_2"]  # an LSTM's (output, (h, c))
    assert [t is x for t, x in zip(tensors_of({"out": a, "aux": [h, c]}), (a, h, c))] == [True] * 3
    for bad in [(a, None), (), "text"]:
        with pytest.raises(InputError, match="expected a tensor, a tuple of tensors or a dict of them"):
            outputs_of(bad)
    attention = nn.MultiheadAttention(3, 1, batch_first=True)
    assert len(tensors_of(attention(a[None], a[None], a[None], need_weights=False), strict=False)) == 1
    assert tensors_of((a, None, ()), strict=False) == [a] and tensors_of("text", strict=False) == []


def test_quality_rules_judge_a_lower_is_better_metric_that_way():
    metric = build_task(TaskConfig(**CUSTOM)).quality()
    assert (metric.scale, metric.unit, metric.higher_is_better) == (1.0, "", False)
    evidence = Evidence(metrics={"mae": 0.30}, reference_metrics={"mae": 0.25})
    limit, drop = decide(evidence, [QualityLimit(0.28, metric, name="mae.max", label="max"),
                                    QualityDrop(0.1, metric=metric, name="mae.max_drop")])
    assert (limit.status, limit.margin) == ("fail", pytest.approx(-0.02))
    assert (drop.status, drop.measured) == ("pass", pytest.approx(0.05)) and "a rise of" in drop.message


@pytest.mark.parametrize(("config", "expected"), [
    ({"kind": "custom", "loss": "tests.pipeline.tasks.custom_task:not_scalar", "metric": "x:y", "metric_name": "m"},
     "returned [4, 1]; it must return a scalar tensor"),
    ({**YOLO, "loss": "tests.pipeline.tasks.nowhere:fn"}, "task.loss 'tests.pipeline.tasks.nowhere:fn': cannot import"),
])
def test_a_task_function_that_does_not_fit_is_one_line(config: dict, expected: str):
    task = build_task(TaskConfig(**config), 3)
    outputs = {"output": torch.zeros(4, 1)}
    with pytest.raises(InputError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        task.loss(outputs, torch.zeros(4))


def test_a_model_whose_outputs_are_not_the_task_s_is_one_line():
    task = build_task(TaskConfig(kind="segmentation"), SEGMENTATION_CLASSES)
    with pytest.raises(InputError, match=r"outputs shape \[2, 10\]; a segmenter's is \[batch, num_classes=11"):
        task.check({"output": torch.zeros(2, 10)}, 2, "model 'x'")
    detector = build_task(TaskConfig(**YOLO), 10)
    with pytest.raises(InputError, match="task.postprocess 'spiralprune.pipeline.zoo.yolo:yolo_decode' fails on the outputs"):
        detector.check({"output": torch.zeros(2, 10)}, 2, "model 'x'")
