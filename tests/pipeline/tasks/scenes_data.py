"""Small scene data sets for the run tests (``data: tests.pipeline.tasks.scenes_data:segmentation``)."""

from __future__ import annotations

from spiralprune.pipeline.casestudies.scenes import DetectionScenes, SegmentationScenes, load_scenes


def segmentation():
    return SegmentationScenes(load_scenes("train", 96, size=32)), SegmentationScenes(load_scenes("val", 32, size=32))


def detection():
    return DetectionScenes(load_scenes("train", 96, size=64)), DetectionScenes(load_scenes("val", 32, size=64))


def detection_rgb():
    """Scenes as three-channel images, the input torchvision's detectors take (they resize them to their own size)."""
    splits = DetectionScenes(load_scenes("train", 8, size=64)), DetectionScenes(load_scenes("val", 8, size=64))
    for split in splits:
        split.images = split.images.repeat(1, 3, 1, 1)
    return splits
