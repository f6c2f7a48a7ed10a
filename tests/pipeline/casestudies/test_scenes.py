"""Detection and segmentation scenes composed from Debian's Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies import scenes
from spiralprune.pipeline.casestudies.images import FASHION_MNIST, read_idx
from spiralprune.pipeline.casestudies.scenes import (
    NUM_CLASSES, SEGMENTATION_CLASSES, DetectionScenes, Scenes, SegmentationScenes, compose, detection,
    detection_collate, segmentation,
)
from tests.pipeline.casestudies.debian import needs_fashion_mnist


@pytest.fixture(scope="module")
def fashion() -> tuple[np.ndarray, np.ndarray]:
    return (read_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz"),
            read_idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz"))


@pytest.fixture(scope="module")
def composed(fashion) -> Scenes:
    return compose(*fashion, 60, size=48, max_items=4, seed=7)


def _equal(a: Scenes, b: Scenes) -> bool:
    return (np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
            and all(np.array_equal(x, y) for x, y in zip(a.boxes + a.labels, b.boxes + b.labels)))


@needs_fashion_mnist
def test_same_seed_same_scenes_other_seed_others(fashion, composed) -> None:
    assert _equal(compose(*fashion, 60, size=48, max_items=4, seed=7), composed)
    assert not _equal(compose(*fashion, 60, size=48, max_items=4, seed=8), composed)


@needs_fashion_mnist
def test_shapes_dtypes_and_normalization(composed) -> None:
    assert len(composed) == 60 and len(composed.boxes) == len(composed.labels) == 60
    assert composed.images.shape == (60, 1, 48, 48) and composed.images.dtype == np.float32
    assert composed.masks.shape == (60, 48, 48) and composed.masks.dtype == np.int64
    assert composed.images.min() == pytest.approx(-0.2 / 0.3)  # the background
    assert composed.images.max() <= (1 - 0.2) / 0.3 + 1e-5
    for boxes, labels in zip(composed.boxes, composed.labels):
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        assert boxes.shape == (len(labels), 4) and 1 <= len(labels) <= 4


@needs_fashion_mnist
def test_boxes_and_labels_agree_with_masks(composed) -> None:
    counts = set()
    for image, mask, boxes, labels in zip(composed.images, composed.masks, composed.boxes, composed.labels):
        counts.add(len(labels))
        assert ((labels >= 1) & (labels <= NUM_CLASSES)).all()
        assert ((boxes >= 0) & (boxes <= 48)).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes == np.round(boxes)).all()
        covered = {label: np.zeros(mask.shape, bool) for label in np.unique(mask) if label}
        for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels):
            inside = mask[y1:y2, x1:x2] == label
            assert inside.any()
            # Tight: every edge row and column of the box holds some of the label.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[label][y1:y2, x1:x2] = True
        assert set(covered) == set(labels.tolist())
        for label, area in covered.items():
            assert not ((mask == label) & ~area).any()
        # Item pixels are bright; the background is the darkest value.
        assert (image[0][mask > 0] > (scenes.MASK_THRESHOLD / 255 - 0.2) / 0.3).all()
    assert counts == {1, 2, 3, 4}


@needs_fashion_mnist
def test_items_larger_than_the_canvas_shrink_to_fit(fashion) -> None:
    small = compose(*fashion, 5, size=20, seed=1, min_scale=1.5, max_scale=2.0)
    assert small.images.shape == (5, 1, 20, 20) and all(((b >= 0) & (b <= 20)).all() for b in small.boxes)


def test_bad_arguments_are_input_errors(tmp_path: Path) -> None:
    images, labels = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
    for kwargs in ({"max_items": 0}, {"min_scale": 2.0, "max_scale": 1.0}, {"size": 0}):
        with pytest.raises(InputError):
            compose(images, labels, 2, **kwargs)
    with pytest.raises(InputError):
        compose(images, labels[:2], 2)
    with pytest.raises(InputError, match="install Debian's dataset-fashion-mnist"):
        scenes.load_scenes("train", 2, source=tmp_path / "absent")
    with pytest.raises(InputError, match="split"):
        scenes.load_scenes("test", 2)


@needs_fashion_mnist
def test_datasets_and_collate(composed) -> None:
    image, mask = SegmentationScenes(composed)[3]
    assert image.dtype == torch.float32 and tuple(image.shape) == (1, 48, 48)
    assert mask.dtype == torch.int64 and tuple(mask.shape) == (48, 48)
    assert torch.equal(mask, torch.from_numpy(composed.masks[3])) and int(mask.max()) < SEGMENTATION_CLASSES
    batch = next(iter(DataLoader(SegmentationScenes(composed), batch_size=4)))
    assert tuple(batch[0].shape) == (4, 1, 48, 48) and tuple(batch[1].shape) == (4, 48, 48)

    detections = DetectionScenes(composed)
    image, target = detections[3]
    assert torch.equal(image, torch.from_numpy(composed.images[3]))
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert torch.equal(target["labels"], torch.from_numpy(composed.labels[3]))
    images, targets = next(iter(DataLoader(detections, batch_size=5, collate_fn=detection_collate)))
    assert tuple(images.shape) == (5, 1, 48, 48) and len(targets) == 5
    assert [len(t["labels"]) for t in targets] == [len(l) for l in composed.labels[:5]]


@needs_fashion_mnist
def test_factories_give_map_style_splits_of_declared_sizes() -> None:
    train, val = detection()
    assert (len(train), len(val)) == (scenes.TRAIN_SCENES, scenes.VAL_SCENES)
    assert tuple(train[0][0].shape) == (1, scenes.SIZE, scenes.SIZE) and set(train[0][1]) == {"boxes", "labels"}
    seg_train, seg_val = segmentation()
    assert isinstance(seg_train, SegmentationScenes) and (len(seg_train), len(seg_val)) == (len(train), len(val))
    # The same composition under both views, and the splits differ.
    assert torch.equal(seg_train[0][0], train[0][0]) and not torch.equal(seg_val[0][0], train[0][0])
