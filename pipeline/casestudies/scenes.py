"""Synthetic detection and segmentation scenes composed from Debian's Fashion-MNIST.

Every scene is a ``size x size`` black canvas with one to ``max_items`` Fashion-MNIST products pasted
at random positions and scales (bilinear resizing), placed so that no two overlap much. An item's mask
is its pixels brighter than ``MASK_THRESHOLD``; later items paint over earlier ones, and an item's box is
the tight box of what is left of it. Labels follow torchvision: class + 1, 0 being the background.

Composing the default 2,400 scenes takes well under a second, so nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.cache import require_source
from spiralprune.pipeline.casestudies.images import CLASSES, FASHION_MNIST, read_idx

NUM_CLASSES = len(CLASSES)  # detection: the ten products, without the background
SEGMENTATION_CLASSES = NUM_CLASSES + 1  # segmentation: background (0) and the ten products
SIZE = 64
TRAIN_SCENES = 2000
VAL_SCENES = 400
MASK_THRESHOLD = 25  # of 255: an item's pixels above it are the item
MAX_IOU = 0.3  # a placement whose box overlaps an earlier item's more than this is drawn again
PLACEMENT_TRIES = 10  # after which the item is left out
MEAN, STD = 0.2, 0.3  # images are (x / 255 - MEAN) / STD
_SPLITS = {"train": ("train", 0), "val": ("t10k", 1)}  # split: (IDX file prefix, seed)


@dataclass(frozen=True)
class Scenes:
    """``images`` float32 [N,1,H,W] normalized; ``masks`` int64 [N,H,W] (0 background, class + 1);
    per scene ``boxes`` float32 [K,4] (x1, y1, x2, y2 in pixels, x2/y2 exclusive) and ``labels`` int64 [K]."""

    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


@cache
def _bilinear_weights(source: int, target: int) -> np.ndarray:
    """[target, source] matrix of bilinear interpolation weights (half-pixel centers, as torch's
    ``align_corners=False``): ``W @ x`` resizes the first axis of ``x``."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = position - low
    weights = np.zeros((target, source))
    np.add.at(weights, (np.arange(target), low), 1 - frac)
    np.add.at(weights, (np.arange(target), high), frac)
    return weights


def _resize(item: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = item.shape
    return _bilinear_weights(h, height) @ item.astype(np.float64) @ _bilinear_weights(w, width).T


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def compose(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    *,
    size: int = SIZE,
    max_items: int = 3,
    seed: int = 0,
    min_scale: float = 0.6,
    max_scale: float = 1.4,
) -> Scenes:
    """``count`` scenes of items drawn from ``images`` [M,h,w] uint8 with class ``labels`` [M] (0-based);
    the same arguments give the same scenes. An item scaled past the canvas is shrunk to fit it."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or len(images) == 0 or len(labels) != len(images):
        raise InputError(f"compose needs images [M,h,w] and M labels, got {images.shape} and {labels.shape}")
    if count < 0 or size < 1 or max_items < 1 or not 0 < min_scale <= max_scale:
        raise InputError(f"compose: bad count={count}, size={size}, max_items={max_items} "
                         f"or scales [{min_scale}, {max_scale}]")
    rng = np.random.default_rng(seed)
    canvases = np.zeros((count, size, size), dtype=np.float32)
    masks = np.zeros((count, size, size), dtype=np.int64)
    all_boxes, all_labels = [], []
    for n in range(count):
        canvas, owner, placed = canvases[n], np.full((size, size), -1), []
        for _ in range(int(rng.integers(1, max_items + 1))):
            index, scale = int(rng.integers(len(images))), rng.uniform(min_scale, max_scale)
            h, w = (min(size, max(1, round(d * scale))) for d in images.shape[1:])
            item = _resize(images[index], h, w)
            inside = item > MASK_THRESHOLD
            if not inside.any():
                continue
            own = _box(inside)
            for _ in range(PLACEMENT_TRIES):
                y, x = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
                box = own + np.array([x, y, x, y], dtype=np.float32)
                if all(_iou(box, earlier) <= MAX_IOU for earlier, _ in placed):
                    break
            else:
                continue
            region = np.s_[y : y + h, x : x + w]
            # The item's faint edge (not in its mask) shows on the background but never hides an earlier item.
            canvas[region] = np.where(inside, item, np.maximum(canvas[region], item))
            owner[region][inside] = len(placed)
            placed.append((box, int(labels[index]) + 1))
        visible = [(k, label) for k, (_, label) in enumerate(placed) if (owner == k).any()]
        all_boxes.append(np.stack([_box(owner == k) for k, _ in visible]).astype(np.float32)
                         if visible else np.zeros((0, 4), np.float32))
        all_labels.append(np.array([label for _, label in visible], dtype=np.int64))
        lookup = np.array([0] + [label for _, label in placed], dtype=np.int64)
        masks[n] = lookup[owner + 1]
    normalized = ((canvases / 255.0 - MEAN) / STD).astype(np.float32)[:, None]
    return Scenes(normalized, masks, all_boxes, all_labels)


def load_scenes(split: str, count: int, *, size: int = SIZE, seed: int = 0, source: Path = FASHION_MNIST) -> Scenes:
    """``count`` scenes from Fashion-MNIST's official ``train`` or ``val`` (t10k) split; the two splits
    use different seeds for the same ``seed``."""
    if split not in _SPLITS:
        raise InputError(f"split must be one of {sorted(_SPLITS)}, got '{split}'")
    prefix, offset = _SPLITS[split]
    require_source(source, "dataset-fashion-mnist")
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
    return compose(images, labels, count, size=size, seed=seed * len(_SPLITS) + offset)


class SegmentationScenes(Dataset):
    """``(image [1,H,W] float32, mask [H,W] int64)`` per scene."""

    def __init__(self, scenes: Scenes) -> None:
        self.images, self.masks = torch.from_numpy(scenes.images), torch.from_numpy(scenes.masks)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


class DetectionScenes(Dataset):
    """``(image [1,H,W] float32, {"boxes": float32 [K,4] xyxy, "labels": int64 [K]})`` per scene, as
    torchvision's detection models take them; batch with ``detection_collate``."""

    def __init__(self, scenes: Scenes) -> None:
        self.images = torch.from_numpy(scenes.images)
        self.targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(l)}
                        for b, l in zip(scenes.boxes, scenes.labels)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[index], self.targets[index]


def detection_collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """Stacked images and the list of their targets (which differ in length, so do not stack)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


def segmentation() -> tuple[SegmentationScenes, SegmentationScenes]:
    """Data factory ``spiralprune.pipeline.casestudies.scenes:segmentation``: (train, val) scene masks."""
    return (SegmentationScenes(load_scenes("train", TRAIN_SCENES)), SegmentationScenes(load_scenes("val", VAL_SCENES)))


def detection() -> tuple[DetectionScenes, DetectionScenes]:
    """Data factory ``spiralprune.pipeline.casestudies.scenes:detection``: (train, val) scene boxes."""
    return (DetectionScenes(load_scenes("train", TRAIN_SCENES)), DetectionScenes(load_scenes("val", VAL_SCENES)))
