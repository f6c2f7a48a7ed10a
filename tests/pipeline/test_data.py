from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DataConfig, parse_config
from spiralprune.pipeline.data import LoaderSettings, digits_datasets, load_data, load_datasets, splits_of
from spiralprune.pipeline.prune.group import CALIBRATION_BATCHES, draw_calibration, cross_entropy
from spiralprune.pipeline.teacher import RunData

SHAPE = [1, 3, 16, 16]


def write_image_folder(root: Path, pixels=None, per_class: int = 2) -> Path:
    """``root/{train,val}/{cat,dog}/*.png``: 20x24 RGB images, random ones unless every pixel is ``pixels``."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = (np.full((20, 24, 3), pixels, dtype=np.uint8) if pixels is not None
                         else rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def test_digits_is_deterministic_and_stratified():
    train, val = digits_datasets(size=16, seed=0)
    again, _ = digits_datasets(size=16, seed=0)
    assert len(train) + len(val) == 1797
    assert train.tensors[0].shape[1:] == (1, 16, 16)
    assert np.array_equal(train.tensors[1].numpy(), again.tensors[1].numpy())
    assert set(val.tensors[1].tolist()) == set(range(10))


def test_image_folder(tmp_path: Path):
    train, val = load_datasets(str(write_image_folder(tmp_path)), SHAPE)
    image, label = train[0]
    assert image.shape == (3, 16, 16) and label in (0, 1)
    assert len(val) == 4 and train.classes == ["cat", "dog"]


def test_mean_and_std_normalize_every_split(tmp_path: Path):
    """A constant (51, 102, 153) image is (0.2, 0.4, 0.6) as a tensor: normalized, (x - mean) / std per channel."""
    config = DataConfig(source=str(write_image_folder(tmp_path, pixels=(51, 102, 153))),
                        mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    splits = load_data(config, SHAPE)
    expected = torch.tensor([-1.2, -0.2, 0.1]).view(3, 1, 1).expand(3, 16, 16)
    for dataset in (splits.train, splits.val, splits.calibration):  # a crop of a constant image is constant
        torch.testing.assert_close(dataset[0][0], expected, atol=1e-6, rtol=0)
    unnormalized = load_data(config.model_copy(update={"mean": None, "std": None}), SHAPE)
    torch.testing.assert_close(unnormalized.val[0][0], expected * torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1)
                               + 0.5, atol=1e-6, rtol=0)


def test_augmentation_is_for_training_only(tmp_path: Path):
    source = str(write_image_folder(tmp_path))
    splits = load_data(DataConfig(source=source, augment=True), SHAPE)
    plain = load_data(DataConfig(source=source), SHAPE)
    assert plain.train is plain.calibration
    assert splits.calibration is not splits.train and len(splits.calibration) == len(splits.train) == 4
    torch.manual_seed(0)
    draws = [splits.train[0][0] for _ in range(4)]
    assert draws[0].shape == (3, 16, 16) and any(not torch.equal(draws[0], d) for d in draws[1:])
    for index in range(4):  # the calibration view: the training files, un-augmented, the same on every read
        torch.testing.assert_close(splits.calibration[index][0], plain.train[index][0], atol=0, rtol=0)
        torch.testing.assert_close(splits.calibration[index][0], splits.calibration[index][0], atol=0, rtol=0)
        assert splits.calibration[index][1] == splits.train[index][1]
    torch.testing.assert_close(splits.val[0][0], plain.val[0][0], atol=0, rtol=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mean": [0.5, 0.5, 0.5]}, "mean and std go together"),
        ({"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2]}, r"mean and std differ in length \(3 and 2\)"),
        ({"mean": [0.5], "std": [0.0]}, r"data\.std\.0: Input should be greater than 0"),
        ({"num_workers": -1}, r"data\.num_workers"),
    ],
)
def test_bad_data_config_is_one_line(data, message):
    with pytest.raises(InputError, match=message) as error:
        parse_config({"model": "torchvision:resnet18", "input_shape": SHAPE, "data": data})
    assert "\n" not in str(error.value)
    with pytest.raises(ValidationError):
        DataConfig(**data)


def test_mean_and_std_need_one_value_per_channel(tmp_path: Path):
    config = DataConfig(source=str(write_image_folder(tmp_path)), mean=[0.5] * 3, std=[0.2] * 3)
    message = r"one value per input channel: 3 given, input_shape \[1, 1, 16, 16\] has 1"
    with pytest.raises(InputError, match=message) as error:
        load_data(config, [1, 1, 16, 16])
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="normalize an ImageFolder directory's images; data 'digits'"):
        load_data(DataConfig(mean=[0.5], std=[0.2]), [1, 1, 16, 16])


def test_config_json_records_the_data_settings():
    dumped = parse_config({"model": "torchvision:resnet18", "input_shape": SHAPE}).model_dump(mode="json")["data"]
    assert dumped == {"source": "digits", "batch_size": 64, "seed": 0, "mean": None, "std": None, "augment": False,
                      "num_workers": 0, "pin_memory": False}


def _pairs(samples):
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])


def test_splits_of_takes_data_sets_or_loaders():
    train, val = TensorDataset(torch.zeros(4, 2), torch.zeros(4)), TensorDataset(torch.ones(2, 2), torch.ones(2))
    plain = splits_of(train, val, "test data")
    assert (plain.train, plain.val, plain.calibration, plain.loading) == (train, val, train, LoaderSettings())
    loaders = splits_of(DataLoader(train, batch_size=3, num_workers=2, pin_memory=True, collate_fn=_pairs),
                        DataLoader(val), "test data", LoaderSettings(num_workers=1))
    assert (loaders.train, loaders.val, loaders.calibration) == (train, val, train)
    assert loaders.loading == LoaderSettings(num_workers=2, pin_memory=True, collate_fn=_pairs)
    defaults = LoaderSettings(num_workers=3, pin_memory=True)
    assert splits_of(DataLoader(train), val, "test data", defaults).loading == defaults  # a plain loader sets nothing


class _Stream(IterableDataset):
    def __iter__(self):
        return iter([])


@pytest.mark.parametrize(("train", "message"), [
    ([(torch.zeros(2), 0)], "test data: training data is list; expected a map-style torch Dataset"),
    (DataLoader(_Stream()), "test data: training data is an IterableDataset"),
])
def test_splits_of_rejects_other_objects(train, message):
    with pytest.raises(InputError, match=message) as error:
        splits_of(train, TensorDataset(torch.zeros(1)), "test data")
    assert "\n" not in str(error.value)


FACTORY = """
import torch
from torch.utils.data import DataLoader, TensorDataset

def _collate(samples):
    return torch.stack([s[0] for s in samples]), torch.tensor([int(s[1]) for s in samples])

def loaders():
    train = TensorDataset(torch.zeros(6, 1, 4, 4), torch.zeros(6, dtype=torch.long))
    val = TensorDataset(torch.ones(2, 1, 4, 4), torch.ones(2, dtype=torch.long))
    return DataLoader(train, batch_size=2, num_workers=2, collate_fn=_collate), DataLoader(val)

def numbers():
    return 1, 2
"""


def test_factory_may_return_loaders(tmp_path: Path, monkeypatch):
    (tmp_path / "my_loaders.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    splits = load_data(DataConfig(source="my_loaders:loaders", pin_memory=True), [1, 1, 4, 4])
    assert (len(splits.train), len(splits.val)) == (6, 2) and splits.calibration is splits.train
    assert (splits.loading.num_workers, splits.loading.pin_memory, splits.loading.collate_fn.__name__) == (
        2, True, "_collate")
    with pytest.raises(InputError, match="data factory 'my_loaders:numbers': training data is int"):
        load_data(DataConfig(source="my_loaders:numbers"), [1, 1, 4, 4])


@pytest.mark.parametrize(
    ("source", "shape", "message"),
    [
        ("digits", [1, 3, 16, 16], "1-channel square images"),
        ("/no/such/folder", [1, 1, 16, 16], "does not exist"),
        ("nosuchmodule:factory", [1, 1, 16, 16], "cannot import"),
    ],
)
def test_bad_data(source, shape, message):
    with pytest.raises(InputError, match=message):
        load_datasets(source, shape)


def test_folder_without_splits(tmp_path: Path):
    with pytest.raises(InputError, match="no 'train/' subfolder"):
        load_datasets(str(tmp_path), [1, 1, 16, 16])


def test_run_data_calibrates_on_unaugmented_training_images(tmp_path: Path):
    config = parse_config({"model": "torchvision:resnet18", "input_shape": SHAPE,
                           "data": {"source": str(write_image_folder(tmp_path)), "batch_size": 2, "augment": True}})
    first, second = RunData.load(config), RunData.load(config)
    assert first.splits.train is not first.splits.calibration
    assert first.splits.loading == LoaderSettings(collate_fn=first.task.collate)  # the task's, as none is given
    plain = load_data(config.data.model_copy(update={"augment": False}), SHAPE).train
    assert len(first.calibration) == 2  # the 4 training images in batches of 2, (images, labels) each
    drawn = []
    for (images, labels), again in zip(first.calibration, second.calibration):
        torch.testing.assert_close(images, again[0], atol=0, rtol=0)  # the same draw for the same seed
        for image, label in zip(images, labels.tolist()):  # each one a training image as validation sees it
            drawn += [i for i in range(len(plain)) if torch.equal(plain[i][0], image) and plain[i][1] == label]
    assert sorted(drawn) == [0, 1, 2, 3]


def test_calibration_is_drawn_across_a_class_ordered_training_set():
    """An ImageFolder lists its images class by class: its first batches are of one class, which made the
    loss-aware criteria keep the channels that class needs (docs/landing/2026-12-07.md)."""
    ordered = TensorDataset(torch.rand(400, 1, 4, 4), torch.arange(10).repeat_interleave(40))

    def classes(seed: int | None) -> int:
        batches = draw_calibration(ordered, 16, None, cross_entropy, seed=seed)
        assert len(batches) == CALIBRATION_BATCHES and batches.loss is cross_entropy
        return len(torch.cat([labels for _, labels in batches]).unique())

    assert classes(None) == 2  # the first 64 images in order: 40 of class 0, 24 of class 1
    assert classes(0) >= 8
    first, again, other = (draw_calibration(ordered, 16, None, cross_entropy, seed=s)[0][1] for s in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_run_data_takes_given_splits():
    config = parse_config({"model": "torchvision:resnet18", "input_shape": [1, 1, 4, 4], "data": {"batch_size": 2}})
    train = TensorDataset(torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long))
    val = TensorDataset(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    data = RunData.load(config, splits_of(DataLoader(train, num_workers=2), val, "test data"))
    splits = data.splits
    assert (splits.train, splits.val, splits.calibration, splits.loading.num_workers) == (train, val, train, 2)
    images = data.calibration[0][0]  # two of the training images, drawn at random
    assert len(images) == 2 and all(any(torch.equal(image, row) for row in train.tensors[0]) for image in images)
    with pytest.raises(InputError, match="the given data has an empty train or validation split"):
        RunData.load(config, splits_of(train, TensorDataset(torch.zeros(0, 1, 4, 4)), "test data"))
