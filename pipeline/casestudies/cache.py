"""Build a data folder once: rebuilt only when it is missing or was built with other arguments."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from spiralprune.core.atomic import publish_dir, write_json
from spiralprune.core.errors import InputError

# Relative to the working directory, like the run directories under runs/.
DATA_DIR = Path("runs/data")
# Part of every key: bump it when a builder's output changes, so folders built before are rebuilt.
BUILDERS_VERSION = 2


def cached_build(directory: Path, key: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> Path:
    """``directory`` as ``build(work_dir)`` writes it for ``key``; what ``build`` returns joins the manifest."""
    key = json.loads(json.dumps({**key, "builders_version": BUILDERS_VERSION}, default=str))
    manifest = directory / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("key") == key:
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        summary = build(work)
        write_json(work / "manifest.json", {"key": key, **summary})
        publish_dir(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def require_source(path: Path, package: str) -> Path:
    """``path`` if it exists, else an InputError naming the Debian package that ships it."""
    if not path.exists():
        raise InputError(f"{path} not found: install Debian's {package} (make case-deps)")
    return path


def load_split_arrays(npz: Path) -> tuple[TensorDataset, TensorDataset]:
    """(train, val) datasets from a builder's ``train_x/train_y/val_x/val_y`` arrays."""
    with np.load(npz) as data:
        return (
            TensorDataset(torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"])),
            TensorDataset(torch.from_numpy(data["val_x"]), torch.from_numpy(data["val_y"])),
        )
