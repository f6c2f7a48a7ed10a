"""The one teacher cache: reused for the same training key, retrained for another, resumable only by its own key."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import distill
from spiralprune.pipeline.teacher import trained_model
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]&num_classes=3"
DATA = TensorDataset(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3)
TRAINING = DistillConfig(epochs=1, batch_size=8, early_stopping_patience=None, bn_recalibration_batches=0)


def build() -> tuple[nn.Module, str, list]:
    torch.manual_seed(0)
    return digits_resnet(width=8, blocks=[1, 1, 1, 1], num_classes=3), SPEC, []


def cached(directory: Path, key: dict):
    return trained_model(directory, key, build, DATA, DATA, TRAINING, input_shape=[1, 1, 8, 8], console=Console(quiet=True))


def test_the_same_key_reuses_the_teacher_and_another_key_trains_again(tmp_path: Path) -> None:
    first = cached(tmp_path / "teacher", {"spec": SPEC, "epochs": 1})
    again = cached(tmp_path / "teacher", {"spec": SPEC, "epochs": 1})
    other = cached(tmp_path / "teacher", {"spec": SPEC, "epochs": 2})
    assert (first.trained_now, again.trained_now, other.trained_now) == (True, False, True)
    assert torch.equal(first.module.fc.weight, again.module.fc.weight)
    assert first.metadata["training_key"] == again.metadata["training_key"] != other.metadata["training_key"]
    assert not (tmp_path / "teacher-training").exists()  # the finished training's resume folder is gone


def test_a_killed_training_of_another_key_is_discarded_not_resumed(tmp_path: Path) -> None:
    """Settings changed after a training was killed: its checkpoint, written with other settings,
    must not stop the new one (it did: 'written with a different distillation config')."""
    stale = tmp_path / "teacher-training"
    distill(build()[0], None, DATA, DATA, TRAINING.model_copy(update={"lr": 0.01}), checkpoint_dir=stale)
    assert (stale / "distill.safetensors").is_file()
    result = cached(tmp_path / "teacher", {"spec": SPEC})
    assert result.trained_now and not stale.exists()


def test_a_teacher_trained_before_the_rename_is_reused(tmp_path: Path) -> None:
    """Its key named spiral's zoo and data factories ``spiral.…`` (or bare ``pipeline.…``): the same
    training, so the cache holds (the benchmark's detector teacher took 20 epochs to train again)."""
    old = cached(tmp_path / "teacher", {"spec": SPEC.replace("spiralprune.", "spiral.", 1),
                                        "data": {"source": "spiral.pipeline.casestudies.scenes:detection"}})
    now = cached(tmp_path / "teacher", {"spec": SPEC, "data": {"source": "spiralprune.pipeline.casestudies.scenes:detection"}})
    assert (old.trained_now, now.trained_now) == (True, False)
    bare = cached(tmp_path / "bare", {"spec": SPEC.replace("spiralprune.", "", 1)})
    assert not cached(tmp_path / "bare", {"spec": SPEC}).trained_now and bare.trained_now
    assert cached(tmp_path / "teacher", {"spec": SPEC.replace("digits_resnet:", "other:"), "data": {}}).trained_now
