"""A run's trainings across processes: real torchrun, real gloo, the run's own ledger written once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import spiralprune
from spiralprune.core.errors import InputError
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.config import DistributedConfig
from spiralprune.pipeline.data import digits_datasets
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.ddp import DataRef
from spiralprune.pipeline.evaluate import evaluate_model
from spiralprune.pipeline.ledger import read_ledger
from spiralprune.pipeline.tasks import TaskConfig, build_task
from spiralprune.pipeline.training import Processes, Trainee, train
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

HERE = "tests.pipeline.test_training"  # as the job's processes import it, from the working directory
SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=4&blocks=[1,1,1,1]"


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs, targets)


def error(outputs: Tensor, targets: Tensor) -> float:
    return float((outputs.argmax(1) != targets).float().mean())


@pytest.mark.slow
def test_a_job_trains_the_callers_module_with_the_run_s_task_on_its_share(tmp_path: Path) -> None:
    """A custom task (lower-is-better error) crosses to the processes: the best epoch is the one with the
    least error, not the most; the share's indices cross too, and the weights come back in place."""
    task = TaskConfig(kind="custom", loss=f"{HERE}:cross_entropy", metric=f"{HERE}:error",
                      metric_name="error", higher_is_better=False)
    processes = Processes(DistributedConfig(processes=2), DataRef(source="digits", input_shape=[1, 1, 8, 8]),
                          task, 10, [1, 1, 8, 8], "float32")
    torch.manual_seed(1)
    student = digits_resnet(width=4, blocks=(1, 1, 1, 1))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    train_set, val_set = digits_datasets(size=8)
    result = train(Trainee(student, (SPEC, [])), None, train_set, val_set,
                   DistillConfig(epochs=2, batch_size=64, lr=0.1, early_stopping_patience=None),
                   job_dir=tmp_path / "job", processes=processes, share=range(640))
    assert [(h["processes"], h["device"]) for h in result.history] == [(2, "cpu"), (2, "cpu")]  # auto: no GPU here
    assert result.best_val_quality == min(h["val_quality"] for h in result.history)
    accuracy = evaluate_model(student, val_set, build_task())["accuracy"]
    assert result.best_val_quality == pytest.approx(1 - accuracy)  # the returned weights are the job's best
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())
    assert not (tmp_path / "job").exists()


@pytest.mark.slow
def test_a_run_on_two_processes_trains_and_scores_there(write_config, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = write_config(teacher_training={"epochs": 1, "lr": 0.1}, distill={"epochs": 1, "lr": 0.02, "batch_size": 64},
                          prune={"criterion": "sensitivity"})
    assert main(["run", str(config), "--out", str(out), "--nproc-per-node", "2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("epoch 1/1 on 2 processes") == 2  # the teacher's training and the try's distillation
    assert "train: 1 epochs on 2 processes (torchrun" in err and "distill: 1 epochs on 2 processes (torchrun" in err
    assert err.count("score: sensitivity") == 1 and "on 2 processes (torchrun" in err.split("score: sensitivity")[1]
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
        spiralprune.shrink(digits_resnet(width=8, blocks=(1, 1, 1, 1)), train, val, torch.zeros(1, 1, 16, 16),
                      out=tmp_path / "run", distributed={"processes": 2})
    assert str(info.value) == (
        "distributed training on 2 processes reads the data in every process: data given as Python objects "
        "cannot cross to them; name it in a run config's data: block (an ImageFolder, a package.module:factory) or "
        "train on 1 process"
    )
    assert not (tmp_path / "run").exists()


def test_a_run_on_another_node_than_node_0_is_refused_before_any_work(write_config, tmp_path: Path, capsys) -> None:
    """Node 0 alone runs the spiral; another node's run would plan one of its own and end node 0's followers."""
    out = tmp_path / "run"
    args = ["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "localhost:29500"]
    assert main(["run", str(write_config()), "--out", str(out), *args]) == 2
    assert capsys.readouterr().err.strip() == (
        f"spiralprune: error: distributed.node_rank 1: spiralprune run is node 0's; on this node run spiralprune join {out} "
        "--node-rank 1 (the run folder on a filesystem every node sees at the same path)"
    )
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: cuda is a valid training device here")
def test_training_on_cuda_without_a_gpu_is_refused_before_any_work(write_config, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", str(write_config()), "--out", str(out), "--train-device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == (
        "spiralprune: error: distributed.device cuda: no GPU is visible to this process (torch.cuda.is_available() is "
        "False); train on device cpu or auto"
    )
    assert not out.exists()


def test_a_module_trained_in_process_comes_back_to_the_cpu_on_its_device(tmp_path: Path) -> None:
    """In one process the run's device is the training's (auto: the CPU here), and the module is on the CPU after."""
    torch.manual_seed(1)
    student = digits_resnet(width=4, blocks=(1, 1, 1, 1))
    train_set, val_set = digits_datasets(size=8)
    processes = Processes(DistributedConfig(device="cpu"), None, TaskConfig(), 10, [1, 1, 8, 8], "float32")
    result = train(Trainee(student, (SPEC, [])), None, train_set, val_set, DistillConfig(epochs=1, batch_size=64),
                   job_dir=tmp_path / "job", processes=processes)
    assert [h["device"] for h in result.history] == ["cpu"]
    assert {p.device.type for p in student.parameters()} == {"cpu"} and not student.training
