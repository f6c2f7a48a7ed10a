"""The training DataLoaders' settings at work: worker processes reading a real ImageFolder, a collate function."""

import dataclasses
import os
from functools import partial
from pathlib import Path

from torch import nn
from torch.utils.data import default_collate, get_worker_info

from spiralprune.pipeline.config import DataConfig
from spiralprune.pipeline.data import load_data
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import distill
from tests.pipeline.test_data import write_image_folder


def collate_marking(marks: Path, samples: list):
    """torch's batch, after leaving a file named after the worker process that made it."""
    if get_worker_info() is not None:
        (marks / str(os.getpid())).touch()
    return default_collate(samples)


def test_workers_train_an_epoch_on_an_image_folder(tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    source = write_image_folder(tmp_path / "images", per_class=8)
    splits = load_data(DataConfig(source=str(source), mean=[0.5] * 3, std=[0.25] * 3, num_workers=2), [1, 3, 8, 8])
    loading = dataclasses.replace(splits.loading, collate_fn=partial(collate_marking, marks))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    result = distill(model, None, splits.train, splits.val, DistillConfig(epochs=1, batch_size=4, lr=0.01),
                     loading=loading)
    assert result.epochs_run == 1 and 0 <= result.history[0]["val_quality"] <= 1
    workers = {int(p.name) for p in marks.iterdir()}
    assert workers and os.getpid() not in workers
