"""A run's trainings across processes: real torchrun, real gloo, the run's own ledger written once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import spiral
from spiral.deploy.errors import InputError
from spiral.pipeline.cli import main
from spiral.pipeline.data import digits_datasets
from spiral.pipeline.ledger import read_ledger
from spiral.pipeline.zoo.digits_resnet import digits_resnet


@pytest.mark.slow
def test_a_run_on_two_processes_trains_its_teacher_and_its_try_there(write_config, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = write_config(teacher_training={"epochs": 1, "lr": 0.1}, distill={"epochs": 1, "lr": 0.02, "batch_size": 64})
    assert main(["run", str(config), "--out", str(out), "--nproc-per-node", "2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("epoch 1/1 on 2 processes") == 2  # the teacher's training and the try's distillation
    assert "train: 1 epochs on 2 processes (torchrun" in err and "distill: 1 epochs on 2 processes (torchrun" in err
    lines = (out / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 1  # written once, by the run: not by every rank
    (entry,) = read_ledger(out / "ledger.jsonl")
    assert entry.accepted and entry.distill.epochs == 1 and 0.3 < entry.distill.best_val_quality <= 1
    teacher = json.loads((out / "teacher" / "model" / "spiral.json").read_text())["metadata"]
    assert 0.3 < teacher["val_quality"] <= 1
    assert not list(out.rglob("job.json")) and not list(out.rglob("torchrun.log"))  # the jobs went with their success
    assert "distributed" not in json.loads((out / "config.json").read_text())


def test_data_given_as_python_objects_is_refused_with_more_than_one_process(tmp_path: Path) -> None:
    train, val = digits_datasets(size=16)
    torch.manual_seed(0)
    with pytest.raises(InputError) as info:
        spiral.shrink(digits_resnet(width=8, blocks=(1, 1, 1, 1)), train, val, torch.zeros(1, 1, 16, 16),
                      out=tmp_path / "run", distributed={"processes": 2})
    assert str(info.value) == (
        "distributed training on 2 processes reads the data in every process: data given as Python objects "
        "cannot cross to them; name it in a run config's data: block (an ImageFolder, a package.module:factory) or "
        "train on 1 process"
    )
    assert not (tmp_path / "run").exists()


def test_more_than_one_node_is_refused_before_any_work(write_config, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--nnodes", "2", "--rdzv-endpoint", "localhost:29500"]
    assert main(["run", str(write_config()), "--out", str(out), *args]) == 2
    assert capsys.readouterr().err.strip() == (
        "spiral: error: distributed.nnodes 2: a run trains on one node so far (spiral run on node_rank > 0 does not "
        "yet join node 0's trainings); set nnodes 1 and processes per node"
    )
    assert not out.exists()
