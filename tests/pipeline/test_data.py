from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spiral.deploy.errors import InputError
from spiral.pipeline.data import digits_datasets, load_datasets


def test_digits_is_deterministic_and_stratified():
    train, val = digits_datasets(size=16, seed=0)
    again, _ = digits_datasets(size=16, seed=0)
    assert len(train) + len(val) == 1797
    assert train.tensors[0].shape[1:] == (1, 16, 16)
    assert np.array_equal(train.tensors[1].numpy(), again.tensors[1].numpy())
    assert set(val.tensors[1].tolist()) == set(range(10))


def test_image_folder(tmp_path: Path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    train, val = load_datasets(str(tmp_path), [1, 3, 16, 16])
    image, label = train[0]
    assert image.shape == (3, 16, 16) and label in (0, 1)
    assert len(val) == 4


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
