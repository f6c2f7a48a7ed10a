"""Datasets: scikit-learn's handwritten digits (the demo), an ImageFolder directory, or a factory.

Every source becomes one ``DataSplits``: ``train`` as training sees it (an ImageFolder's augmented),
``val``, and ``calibration``, the training samples as validation sees them (no augmentation, hence
the same on every read), which the pruning criteria and the INT8 stage calibrate on. ``load_data``
makes it from a run's ``data`` config; ``splits_of`` from the user's own data sets or DataLoaders.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset, default_collate, default_convert

from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DataConfig
from spiralprune.pipeline.specs import resolve_callable
from spiralprune.pipeline.tasks import Task


@dataclass(frozen=True)
class LoaderSettings:
    """How the training DataLoaders load: worker processes, page-locked memory (for copies to CUDA), and
    the function that collates samples into a batch (None: the task's, ``spiralprune.pipeline.tasks.Task.collate``)."""

    num_workers: int = 0
    pin_memory: bool = False
    collate_fn: Callable[[list], Any] | None = None

    @classmethod
    def of(cls, config: DataConfig) -> LoaderSettings:
        return cls(config.num_workers, config.pin_memory)

    def for_task(self, task: Task) -> LoaderSettings:
        """These settings, collating as ``task`` does where they name no function of their own."""
        return self if self.collate_fn is not None else dataclasses.replace(self, collate_fn=task.collate)

    def loader(self, dataset: Dataset, device: torch.device, **options: Any) -> DataLoader:
        """A DataLoader of ``dataset`` with these settings (memory pinned only when ``device`` is CUDA).
        Workers start with every iteration (not persistent): their seeds then come from the torch RNG,
        which a distillation checkpoint restores, so a resumed training draws the same augmentations."""
        return DataLoader(dataset, num_workers=self.num_workers, pin_memory=self.pin_memory and device.type == "cuda",
                          collate_fn=self.collate_fn, **options)


@dataclass(frozen=True)
class DataSplits:
    """A run's data: ``train`` as training reads it, ``val``, ``calibration`` (the training samples
    un-augmented), and the training DataLoaders' settings."""

    train: Dataset
    val: Dataset
    calibration: Dataset
    loading: LoaderSettings = LoaderSettings()


def splits_of(train: Dataset | DataLoader, val: Dataset | DataLoader, what: str,
              loading: LoaderSettings = LoaderSettings()) -> DataSplits:
    """Training and validation data given as map-style data sets or DataLoaders: a loader gives its
    ``.dataset``, and the training loader its worker count, pinned memory and collate function where
    it sets them (``loading``'s where not). Spiral batches and samples itself (``distill.batch_size``), so
    a loader's batch size and sampler are not used. The training set is also the calibration set: its
    transforms are the user's. ``what`` names the data in errors (``data factory 'pkg.mod:make'``)."""
    if isinstance(train, DataLoader):
        loading = _settings_of(train, loading)
    train_set = _map_style(train, f"{what}: training data")
    return DataSplits(train_set, _map_style(val, f"{what}: validation data"), train_set, loading)


def _map_style(data: object, what: str) -> Dataset:
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, IterableDataset) or not (isinstance(dataset, Dataset) and hasattr(dataset, "__len__")):
        kind = "an IterableDataset" if isinstance(dataset, IterableDataset) else type(dataset).__name__
        raise InputError(f"{what} is {kind}; expected a map-style torch Dataset (with __len__ and __getitem__) "
                         "or a DataLoader of one")
    return dataset


def _settings_of(loader: DataLoader, defaults: LoaderSettings) -> LoaderSettings:
    """``loader``'s settings where they differ from a plain DataLoader's, ``defaults`` elsewhere."""
    own_collate = loader.collate_fn not in (default_collate, default_convert)
    return LoaderSettings(num_workers=loader.num_workers or defaults.num_workers,
                          pin_memory=loader.pin_memory or defaults.pin_memory,
                          collate_fn=loader.collate_fn if own_collate else defaults.collate_fn)


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


def image_transform(input_shape: list[int], config: DataConfig, augment: bool) -> Callable:
    """An image resized to the model's input (``augment``: a random crop of it, randomly mirrored, as
    torchvision's reference training does), as a [0, 1] tensor, normalized by ``config.mean``/``std``."""
    from torchvision import transforms

    channels, height, width = input_shape[1:]
    if augment:
        steps = [transforms.RandomResizedCrop((height, width)), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize((height, width))]
    if channels == 1:
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    if config.mean is not None:
        steps.append(transforms.Normalize(config.mean, config.std))
    return transforms.Compose(steps)


def image_folder_splits(root: Path, input_shape: list[int], config: DataConfig) -> DataSplits:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``; the training split augmented when
    ``config.augment``, its calibration view (the same files, listed once) not."""
    channels = input_shape[1]
    if config.mean is not None and len(config.mean) != channels:
        raise InputError(f"data.mean and data.std need one value per input channel: {len(config.mean)} given, "
                         f"input_shape {input_shape} has {channels}")
    plain = image_transform(input_shape, config, augment=False)
    calibration, val = (_image_folder(root, split, plain) for split in ("train", "val"))
    train = calibration
    if config.augment:
        train = _transformed(calibration, image_transform(input_shape, config, augment=True))
    return DataSplits(train, val, calibration, LoaderSettings.of(config))


def _image_folder(root: Path, split: str, transform: Callable) -> Dataset:
    from torchvision import datasets

    folder = root / split
    if not folder.is_dir():
        raise InputError(f"data folder {root} has no '{split}/' subfolder (expected {split}/<class>/<image>)")
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as exc:
        raise InputError(f"data folder {folder}: {exc}") from None


def _transformed(folder: Dataset, transform: Callable) -> Dataset:
    """``folder`` (an ImageFolder) with another transform, without listing its files again."""
    from torchvision.datasets.vision import StandardTransform

    view = copy.copy(folder)
    view.transform, view.transforms = transform, StandardTransform(transform, folder.target_transform)
    return view


def load_data(config: DataConfig, input_shape: list[int]) -> DataSplits:
    """The data a run's ``data`` config names, with its loader settings."""
    source, loading = config.source, LoaderSettings.of(config)
    path = Path(source)
    if config.mean is not None and (source == "digits" or not path.is_dir()):
        raise InputError(f"data.mean and data.std normalize an ImageFolder directory's images; data '{source}' "
                         "is not one and brings its own")
    if source == "digits":
        if len(input_shape) != 4 or input_shape[1] != 1 or input_shape[2] != input_shape[3]:
            raise InputError(f"the digits data set is 1-channel square images; input_shape {input_shape} does not fit")
        return splits_of(*digits_datasets(size=input_shape[2], seed=config.seed), "data 'digits'", loading)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"data '{source}' is a file; expected an ImageFolder directory")
        if len(input_shape) != 4:
            raise InputError(f"image folders need a 4-D input_shape [batch, channels, height, width], got {input_shape}")
        return image_folder_splits(path, input_shape, config)
    if ":" not in source:
        raise InputError(f"data '{source}' does not exist and is not a 'package.module:factory' spec")
    result = resolve_callable(source, "data")()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise InputError(f"data factory '{source}' must return (train, val): two data sets or two DataLoaders")
    return splits_of(*result, f"data factory '{source}'", loading)


def load_datasets(source: str, input_shape: list[int], seed: int = 0) -> tuple[Dataset, Dataset]:
    """``source``'s training and validation sets as validation sees them (no augmentation, no
    normalization): for the commands that name a data source alone, which calibrate and evaluate."""
    splits = load_data(DataConfig(source=source, seed=seed), input_shape)
    return splits.calibration, splits.val


def drawn(dataset: Dataset, count: int, seed: int = 0) -> Subset:
    """``count`` samples of ``dataset`` drawn at random with ``seed`` (all of them when it has no more), for
    the inputs parity compares and a data-dependent graph is timed on: the first samples of an ImageFolder
    are all of its first class."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    return Subset(dataset, order.tolist())
