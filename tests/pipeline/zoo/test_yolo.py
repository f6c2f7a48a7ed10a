"""The YOLO-style detector: its output format, a loss that learns, host decoding with NMS, channels
Torch-Pruning can cut around the prediction convs, and ONNX Runtime computing what torch computes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.zoo.yolo import yolo_decode, yolo_detector, yolo_loss

NUM_CLASSES = 3


def _synthetic_batch(count: int = 4, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """Bright rectangles (brightness by class) on a dark, slightly noisy canvas, with their boxes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, size, size, generator=generator) * 0.1
    targets = []
    for index in range(count):
        boxes, labels = [], []
        for item in range(1 + index % 3):
            w, h = (int(v) for v in torch.randint(10, 24, (2,), generator=generator))
            x1 = (item * 20 + int(torch.randint(0, 4, (1,), generator=generator))) % (size - w)
            y1 = int(torch.randint(0, size - h, (1,), generator=generator))
            label = 1 + (index + item) % NUM_CLASSES
            images[index, 0, y1 : y1 + h, x1 : x1 + w] = 0.3 * label
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(label)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


def _no_boxes() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.mark.parametrize("size", [64, 96])
def test_it_returns_one_raw_map_per_stride(size: int) -> None:
    torch.manual_seed(0)
    model = yolo_detector().eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 1, size, size))
    assert isinstance(outputs, tuple)
    assert [tuple(out.shape) for out in outputs] == [(2, 4 + 10, size // s, size // s) for s in (8, 16, 32)]
    assert len(model.prediction_layers) == 6
    assert all(type(layer) is torch.nn.Conv2d for layer in model.prediction_layers)


def test_a_spec_builds_it() -> None:
    model = load_source("spiralprune.pipeline.zoo.yolo:yolo_detector?num_classes=3&width=8&in_channels=3").module.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64))[0].shape == (1, 7, 8, 8)
    with pytest.raises(ValueError, match="at least 1"):
        yolo_detector(width=0)


def test_the_loss_is_a_finite_scalar_with_and_without_boxes() -> None:
    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES, width=8)
    images, targets = _synthetic_batch(2)
    for batch_targets in (targets, [targets[0], _no_boxes()], [_no_boxes(), _no_boxes()]):
        loss = yolo_loss(model(images), batch_targets)
        assert loss.dim() == 0 and math.isfinite(loss.item())
        loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="1..3"):
        background = {"boxes": torch.tensor([[1.0, 1, 20, 20]]), "labels": torch.tensor([0])}
        yolo_loss(model(images), [background, _no_boxes()])


def test_a_box_smaller_than_a_stride_still_trains_a_location() -> None:
    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES, width=8)
    outputs = model(torch.zeros(1, 1, 64, 64))
    tiny = {"boxes": torch.tensor([[9.0, 9.0, 11.0, 11.0]]), "labels": torch.tensor([2])}
    assert yolo_loss(outputs, [tiny]) > yolo_loss(outputs, [_no_boxes()]) + 1.0  # a positive's focal + GIoU


def test_the_loss_decreases_under_adam() -> None:
    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES, width=8)
    images, targets = _synthetic_batch(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = yolo_loss(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _outputs_with(detections: list[tuple[int, int, int, float]], size: int = 64) -> list[torch.Tensor]:
    """Raw outputs for one image: every distance 1 stride (softplus^-1(1)), every class logit -10, and
    ``(level, location, class index, logit)`` set."""
    outputs = []
    for stride in (8, 16, 32):
        out = torch.full((1, 4 + NUM_CLASSES, size // stride, size // stride), -10.0)
        out[:, :4] = math.log(math.expm1(1.0))
        outputs.append(out)
    for level, location, class_index, logit in detections:
        outputs[level][0, 4 + class_index].view(-1)[location] = logit
    return outputs


def test_decode_returns_scored_boxes_in_pixels_with_torchvision_labels() -> None:
    # level 0 (stride 8) location 9 is row 1, column 1: center (12, 12), box (4, 4, 20, 20)
    # level 2 (stride 32) location 3 is row 1, column 1: center (48, 48), box (16, 16, 80, 80) clipped to 64
    (result,) = yolo_decode(_outputs_with([(0, 9, 0, 3.0), (2, 3, 2, 1.0), (1, 0, 1, -5.0)]))
    assert set(result) == {"boxes", "scores", "labels"}
    assert result["labels"].dtype == torch.int64 and result["labels"].tolist() == [1, 3]
    assert torch.allclose(result["boxes"], torch.tensor([[4.0, 4, 20, 20], [16, 16, 64, 64]]), atol=1e-4)
    assert torch.allclose(result["scores"], torch.tensor([3.0, 1.0]).sigmoid())


def test_decode_orders_by_score_keeps_labels_in_range_and_takes_numpy() -> None:
    torch.manual_seed(0)
    outputs = [torch.randn(2, 4 + NUM_CLASSES, 64 // s, 64 // s) for s in (8, 16, 32)]
    results = yolo_decode([out.numpy() for out in outputs], score_threshold=0.3, max_detections=7)
    assert len(results) == 2
    for result in results:
        assert 0 < len(result["scores"]) <= 7
        assert (result["scores"][:-1] >= result["scores"][1:]).all() and (result["scores"] > 0.3).all()
        assert result["labels"].min() >= 1 and result["labels"].max() <= NUM_CLASSES
        assert result["boxes"].shape == (len(result["scores"]), 4)
        assert (result["boxes"][:, 2:] >= result["boxes"][:, :2]).all()


def test_nms_removes_duplicates_of_a_class_but_not_across_classes() -> None:
    # locations 9 and 10 of level 0: boxes (4, 4, 20, 20) and (12, 4, 28, 20), IoU 1/3
    duplicates = [(0, 9, 0, 3.0), (0, 10, 0, 2.0)]
    assert len(yolo_decode(_outputs_with(duplicates), iou_threshold=0.3)[0]["scores"]) == 1
    assert len(yolo_decode(_outputs_with(duplicates), iou_threshold=0.5)[0]["scores"]) == 2
    other_class = [(0, 9, 0, 3.0), (0, 10, 1, 2.0)]
    assert yolo_decode(_outputs_with(other_class), iou_threshold=0.3)[0]["labels"].tolist() == [1, 2]


def test_torch_pruning_halves_its_channels_and_keeps_the_output_format() -> None:
    import torch_pruning as tp

    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES).eval()
    before = sum(p.numel() for p in model.parameters())
    example = torch.randn(1, 1, 64, 64)
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
        ignored_layers=model.prediction_layers,
    )
    pruner.step()
    assert sum(p.numel() for p in model.parameters()) < 0.35 * before
    assert model.stem.conv.out_channels == 8
    assert [layer.out_channels for layer in model.prediction_layers] == [4, NUM_CLASSES] * 3
    with torch.no_grad():
        outputs = model(torch.randn(2, 1, 96, 96))
    assert [tuple(out.shape) for out in outputs] == [(2, 4 + NUM_CLASSES, 96 // s, 96 // s) for s in (8, 16, 32)]
    assert len(yolo_decode(outputs, score_threshold=0.0)) == 2


def _ort_outputs(path: Path, images: torch.Tensor) -> tuple[list[str], list[np.ndarray]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return names, session.run(None, {session.get_inputs()[0].name: images.numpy()})


def test_export_onnx_exports_its_three_outputs_and_onnx_runtime_matches_torch(tmp_path: Path) -> None:
    from spiralprune.pipeline.export import export_onnx

    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES, width=8).eval()
    path = export_onnx(model, torch.randn(1, 1, 64, 64), tmp_path / "yolo.onnx")
    images = torch.randn(3, 1, 64, 64)  # a batch other than the example's: the batch axis is dynamic
    names, got = _ort_outputs(path, images)
    assert len(set(names)) == 3  # named by export_onnx (output_0 .. today); compared by position
    with torch.no_grad():
        expected = model(images)
    for ort_out, torch_out in zip(got, expected):
        np.testing.assert_allclose(ort_out, torch_out.numpy(), atol=1e-4, rtol=1e-4)
    decoded = yolo_decode([torch.from_numpy(out) for out in got], score_threshold=0.0, max_detections=5)
    assert [len(r["scores"]) for r in decoded] == [5, 5, 5]


def test_it_exports_with_named_outputs_at_another_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = yolo_detector(num_classes=NUM_CLASSES, width=8).eval()
    path = tmp_path / "yolo.onnx"
    names = ["p3", "p4", "p5"]
    torch.onnx.export(
        model, (torch.randn(1, 1, 96, 96),), str(path), input_names=["input"], output_names=names,
        dynamic_axes={name: {0: "batch"} for name in ["input", *names]}, opset_version=17, dynamo=False,
    )
    images = torch.randn(2, 1, 96, 96)
    got_names, got = _ort_outputs(path, images)
    assert got_names == names
    with torch.no_grad():
        for ort_out, torch_out in zip(got, model(images)):
            np.testing.assert_allclose(ort_out, torch_out.numpy(), atol=1e-4, rtol=1e-4)
