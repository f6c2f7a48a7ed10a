"""Fashion-MNIST from Debian's dataset-fashion-mnist, written out as an ImageFolder tree."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies import images
from spiralprune.pipeline.casestudies.images import CLASSES, build_image_folder, read_idx
from spiralprune.pipeline.data import load_datasets
from tests.pipeline.casestudies.debian import needs_fashion_mnist


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_read_idx_reads_shape_and_values(tmp_path: Path) -> None:
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in values.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + values.tobytes()))
    np.testing.assert_array_equal(read_idx(path), values)
    path.write_bytes(gzip.compress(header + values.tobytes()[:-1]))
    with pytest.raises(InputError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"not gzip")
    with pytest.raises(InputError, match="cannot read"):
        read_idx(path)
    with pytest.raises(InputError, match="cannot read"):
        read_idx(tmp_path / "absent.gz")


@pytest.mark.slow
@needs_fashion_mnist
def test_folder_is_deterministic_balanced_cached_and_loads_as_image_folder(tmp_path: Path) -> None:
    first = build_image_folder(tmp_path / "a", train_per_class=3, val_per_class=2)
    second = build_image_folder(tmp_path / "b", train_per_class=3, val_per_class=2)
    assert _tree(first) == _tree(second)
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (first / split).iterdir()) == sorted(CLASSES)
        assert all(len(list((first / split / name).iterdir())) == count for name in CLASSES)
    stamp = (first / "train" / "bag").stat().st_mtime_ns
    assert build_image_folder(tmp_path / "a", train_per_class=3, val_per_class=2) == first
    assert (first / "train" / "bag").stat().st_mtime_ns == stamp

    train, val = load_datasets(str(first), [1, 3, 32, 32])
    image, label = train[0]
    assert (len(train), len(val)) == (30, 20) and tuple(image.shape) == (3, 32, 32)
    assert train.classes == sorted(CLASSES) and 0 <= label < 10


def test_missing_package_is_one_clear_error(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-fashion-mnist"
    with pytest.raises(InputError, match="install Debian's dataset-fashion-mnist"):
        build_image_folder(tmp_path / "out", source=missing)
    assert images.main(["--out", str(tmp_path / "out"), "--source", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset-fashion-mnist" in err
    assert not (tmp_path / "out").exists()
