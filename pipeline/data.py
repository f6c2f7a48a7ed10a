"""Datasets: scikit-learn's handwritten digits (the demo), an ImageFolder directory, or a factory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from spiral.deploy.errors import InputError
from spiral.pipeline.specs import resolve_callable


def digits_datasets(size: int = 32, seed: int = 0, val_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """The 1,797 8x8 digits shipped inside scikit-learn, resized to ``size`` and split per class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images - 0.3) / 0.35
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    return TensorDataset(images[train_idx], labels[train_idx]), TensorDataset(images[val_idx], labels[val_idx])


def image_folder_datasets(root: Path, input_shape: list[int]) -> tuple[Dataset, Dataset]:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``, resized to the model's input."""
    from torchvision import datasets, transforms

    channels, height, width = input_shape[1:]
    steps = [transforms.Resize((height, width))]
    if channels == 1:
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    transform = transforms.Compose(steps)
    splits = []
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise InputError(f"data folder {root} has no '{split}/' subfolder (expected {split}/<class>/<image>)")
        try:
            splits.append(datasets.ImageFolder(str(folder), transform=transform))
        except (FileNotFoundError, OSError) as exc:
            raise InputError(f"data folder {folder}: {exc}") from None
    return splits[0], splits[1]


def load_datasets(source: str, input_shape: list[int], seed: int = 0) -> tuple[Dataset, Dataset]:
    if source == "digits":
        if len(input_shape) != 4 or input_shape[1] != 1 or input_shape[2] != input_shape[3]:
            raise InputError(f"the digits data set is 1-channel square images; input_shape {input_shape} does not fit")
        return digits_datasets(size=input_shape[2], seed=seed)
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"data '{source}' is a file; expected an ImageFolder directory")
        if len(input_shape) != 4:
            raise InputError(f"image folders need a 4-D input_shape [batch, channels, height, width], got {input_shape}")
        return image_folder_datasets(path, input_shape)
    if ":" not in source:
        raise InputError(f"data '{source}' does not exist and is not a 'package.module:factory' spec")
    result = resolve_callable(source, "data")()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise InputError(f"data factory '{source}' must return (train_dataset, val_dataset)")
    return result
