"""Fashion-MNIST (Debian's ``dataset-fashion-mnist``) written out as an ImageFolder tree.

The package ships Zalando's 70,000 28x28 grayscale product photos in IDX files. The builder writes a
class-balanced subset as ``train/<class>/*.png`` (from the official training split) and
``val/<class>/*.png`` (from the official test split), the layout ``spiralprune run`` reads from any folder.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.cache import DATA_DIR, cached_build, require_source
from spiralprune.pipeline.casestudies.cli import run_builder

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
IMAGE_DIR = DATA_DIR / "fashion-mnist"
_SPLITS = {"train": "train", "val": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed, unsigned bytes) as an array of its declared shape."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise InputError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise InputError(f"{path} is truncated: {body.size} values for shape {shape}")
    return body.reshape(shape)


def build_image_folder(
    out: Path = IMAGE_DIR,
    *,
    source: Path = FASHION_MNIST,
    train_per_class: int = 500,
    val_per_class: int = 100,
    seed: int = 0,
) -> Path:
    """Write (or reuse) ``out/{train,val}/<class>/<index>.png``; the same arguments give the same files."""
    from PIL import Image

    require_source(source, "dataset-fashion-mnist")
    counts = {"train": train_per_class, "val": val_per_class}
    if min(counts.values()) < 1:
        raise InputError(f"images per class must be at least 1, got {counts}")

    def build(work: Path) -> dict:
        for position, (split, prefix) in enumerate(_SPLITS.items()):
            images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
            labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
            rng = np.random.default_rng([seed, position])
            for label, name in enumerate(CLASSES):
                pool = np.flatnonzero(labels == label)
                if len(pool) < counts[split]:
                    raise InputError(f"{split}: class '{name}' has {len(pool)} images, fewer than {counts[split]}")
                folder = work / split / name
                folder.mkdir(parents=True)
                for index in np.sort(rng.choice(pool, counts[split], replace=False)):
                    Image.fromarray(images[index]).save(folder / f"{index:05d}.png", optimize=False)
        return {"classes": list(CLASSES), "images_per_class": counts, "source": str(source)}

    key = {"source": str(source), "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    return cached_build(out, key, build)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiralprune.pipeline.casestudies.images", description=__doc__)
    parser.add_argument("--out", type=Path, default=IMAGE_DIR, help=f"ImageFolder root (default {IMAGE_DIR})")
    parser.add_argument("--source", type=Path, default=FASHION_MNIST, help="folder of the Fashion-MNIST IDX files")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return run_builder(
        parser,
        lambda a: build_image_folder(
            a.out, source=a.source, train_per_class=a.train_per_class, val_per_class=a.val_per_class, seed=a.seed
        ),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
