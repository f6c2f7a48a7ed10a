"""The README's "Your own model": a model trained elsewhere, its factory in the working directory, an
ImageFolder of PNGs, through ``spiralprune run`` with the README's config and through its Python block, with
no environment variables set (no ``PYTHONPATH``: the factory must be found in the working directory)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPIRAL = Path(sys.executable).parent / "spiralprune"  # the installed command, whose import path starts at its bin/
FACTORY = '''\
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )
'''
# What a test must not leave to this machine's speed or to a short training: the budget is met by any
# model (1 s) at any accuracy; training and measuring are short. Everything else is the README's.
TEST_SETTINGS = {
    "budget": {"latency": {"max_ms": 1000.0}, "accuracy": {"min": 0.0}, "parity": {"samples": 32}},
    "distill": {"epochs": 1, "batch_size": 16},
    "target": {"backend": "ort-cpu", "threads": 1, "profile": {
        "warmup_s": 0.05, "block_s": 0.005, "min_rounds": 6, "min_duration_s": 0.05, "max_duration_s": 0.5}},
}


def readme_block(marker: str) -> str:
    """The fenced block after ``<!-- marker -->`` in the README."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", text, re.S)
    assert match, f"README.md has no block marked {marker}"
    return match.group(1)


def without_pythonpath() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def write_images(root: Path, per_class: int, seed: int) -> None:
    """Two classes of noisy 32x32 RGB PNGs: reddish and bluish."""
    rng = np.random.default_rng(seed)
    for label, channel in (("red", 0), ("blue", 2)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 120, (32, 32, 3))
            pixels[..., channel] += 120
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")


def train_with_ddp_prefix(folder: Path) -> None:
    """The user's training: the factory's model, a few steps on the images, saved as DDP saves it."""
    spec = importlib.util.spec_from_file_location("users_model", folder / "mymodel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.build()
    images, labels = [], []
    for label, name in enumerate(("blue", "red")):  # ImageFolder's order: sorted class names
        for path in sorted((folder / "images" / "train" / name).glob("*.png")):
            images.append(torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1))
            labels.append(label)
    x, y = (torch.stack(images) - 0.5) / 0.25, torch.tensor(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.save({f"module.{key}": value for key, value in model.state_dict().items()}, folder / "best.pt")


@pytest.mark.slow
def test_the_readme_config_runs_a_trained_model_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "mymodel.py").write_text(FACTORY)
    write_images(tmp_path / "images" / "train", 24, seed=0)
    write_images(tmp_path / "images" / "val", 12, seed=1)
    train_with_ddp_prefix(tmp_path)
    config = yaml.safe_load(readme_block("your-model-config"))
    (tmp_path / "myrun.yaml").write_text(yaml.safe_dump({**config, **TEST_SETTINGS}))
    done = subprocess.run([str(SPIRAL), "run", "myrun.yaml"], cwd=tmp_path, env=without_pythonpath(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith(
        "result: runs/myrun/model.onnx (step 1 try 1, "), done.stdout[-2000:]
    assert (tmp_path / "runs" / "myrun" / "model.onnx").is_file()
    assert (tmp_path / "runs" / "myrun" / "model" / "spiral.json").is_file()
    teacher = json.loads((tmp_path / "runs" / "myrun" / "teacher" / "summary.json").read_text())
    assert teacher["quality"] > 0.9  # the user's weights were loaded, the images normalized as trained


@pytest.mark.slow
def test_the_readme_python_block_runs_as_it_is_in_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(readme_block("your-model-python"))
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=without_pythonpath(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ship runs/mine/model.onnx" in done.stdout
    assert (tmp_path / "runs" / "mine" / "model.onnx").is_file()
