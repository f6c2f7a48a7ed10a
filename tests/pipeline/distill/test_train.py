import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.progress import Progress
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.checkpoint import CHECKPOINT_NAME
from spiralprune.pipeline.distill.config import DistillConfig, LossWeights
from spiralprune.pipeline.distill.ddp import RESULT, STUDENT_WEIGHTS
from spiralprune.pipeline.distill.train import distill, recalibrate_batchnorm, warmup_cosine
from spiralprune.pipeline.evaluate import evaluate_model
from spiralprune.pipeline.tasks import build_task

KINDS = {
    "logits": LossWeights(logits=1.0),
    "logits+feature": LossWeights(logits=1.0, feature=1.0),
    "logits+feature+contrastive": LossWeights(logits=1.0, feature=1.0, contrastive=1.0),
}


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(step, warmup_steps=2, total_steps=6) for step in range(6)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.5 * (1 + 0.5**0.5), 0.5, 0.5 * (1 - 0.5**0.5)])
    assert warmup_cosine(0, warmup_steps=0, total_steps=4) == 1.0


def test_batchnorm_recalibration_averages_the_statistics_of_the_given_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    norm = model[1]
    norm.running_mean.fill_(100.0)
    images = torch.randn(40, 1, 4, 4) * 3 + 1
    loader = DataLoader(TensorDataset(images, torch.zeros(40, dtype=torch.long)), batch_size=10)

    recalibrate_batchnorm(model, loader, batches=3, task=build_task())

    with torch.no_grad():
        batches = [model[0](images[i : i + 10]).transpose(0, 1).flatten(1) for i in (0, 10, 20)]
    assert torch.allclose(norm.running_mean, torch.stack([b.mean(1) for b in batches]).mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, torch.stack([b.var(1) for b in batches]).mean(0), atol=1e-4)
    assert norm.momentum == 0.1 and not model.training


@pytest.mark.slow
@pytest.mark.parametrize("weights", KINDS.values(), ids=KINDS.keys())
def test_distillation_recovers_a_random_student(weights, digits8, trained_teacher, make_student) -> None:
    train_set, val_set = digits8
    student = make_student()
    before = evaluate_model(student, val_set, build_task())["accuracy"]
    teacher_state = {k: v.clone() for k, v in trained_teacher.state_dict().items()}
    console = Console(file=io.StringIO())
    cfg = DistillConfig(epochs=2, batch_size=32, weights=weights)

    with Progress(console=console) as progress:
        result = distill(student, trained_teacher, train_set, val_set, cfg, progress=progress)
        description = progress.tasks[0].description

    assert before < 0.3 < 0.85 < result.best_val_quality
    assert evaluate_model(student, val_set, build_task())["accuracy"] == result.best_val_quality  # best weights restored
    assert not student.training and not trained_teacher.training
    assert all(torch.equal(v, teacher_state[k]) for k, v in trained_teacher.state_dict().items())
    assert result.epochs_run == 2 and not result.stopped_early
    parts = {f"loss_{name}" for name in ("ce", "logits", "feature", "contrastive") if getattr(weights, name) > 0}
    assert parts <= set(result.history[-1])
    assert "epoch 2/2" in description and "loss" in description and "acc" in description


def test_early_stopping_after_patience_epochs_without_improvement(digits8) -> None:
    train_set, val_set = digits8
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # lr too small to change a prediction
    cfg = DistillConfig(epochs=10, batch_size=64, lr=1e-12, early_stopping_patience=2)

    result = distill(student, None, train_set, val_set, cfg)

    assert result.stopped_early and result.epochs_run == 3
    assert [h["val_quality"] for h in result.history] == [result.best_val_quality] * 3


def test_mixed_precision_on_cpu_trains_in_fp32_and_says_so(digits8, caplog) -> None:
    train_set, val_set = digits8
    torch.manual_seed(0)
    cfg = DistillConfig(epochs=1, batch_size=64, precision="bf16", bn_recalibration_batches=0)
    with caplog.at_level(logging.WARNING):
        result = distill(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), None, train_set, val_set, cfg)
    assert result.history[0]["precision"] == "fp32"
    assert "bf16 needs CUDA" in caplog.text


def test_a_batch_larger_than_the_training_set_is_an_input_error(digits8, make_student) -> None:
    train_set, val_set = digits8
    with pytest.raises(InputError, match="fewer than one batch"):
        distill(make_student(), None, train_set, val_set, DistillConfig(batch_size=4096))


def _checkpoint_epoch(path: Path) -> int:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["spiral"])["epoch"]


@pytest.mark.slow
def test_a_killed_distillation_resumes_to_the_same_weights(tmp_path, make_job) -> None:
    cfg = DistillConfig(epochs=3, batch_size=64, weights=LossWeights(feature=1.0))
    jobs = {}
    for name in ("reference", "killed"):
        jobs[name] = tmp_path / f"{name}.json"
        jobs[name].write_text(make_job(name, cfg).model_dump_json())
    command = [sys.executable, "-m", "spiralprune.pipeline.distill.ddp"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}

    subprocess.run([*command, str(jobs["reference"])], check=True, env=env)

    checkpoint = tmp_path / "killed" / "checkpoint" / CHECKPOINT_NAME
    process = subprocess.Popen([*command, str(jobs["killed"])], env=env)
    deadline = time.monotonic() + 120
    while not (checkpoint.exists() and _checkpoint_epoch(checkpoint) >= 1):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _checkpoint_epoch(checkpoint)
    assert 1 <= killed_at < 3 and not (tmp_path / "killed" / "out" / RESULT).exists()

    subprocess.run([*command, str(jobs["killed"])], check=True, env=env)

    expected = load_file(str(tmp_path / "reference" / "out" / STUDENT_WEIGHTS))
    resumed = load_file(str(tmp_path / "killed" / "out" / STUDENT_WEIGHTS))
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    histories = [json.loads((tmp_path / n / "out" / RESULT).read_text())["history"] for n in ("reference", "killed")]
    drop_time = [[{k: v for k, v in h.items() if k != "seconds"} for h in history] for history in histories]
    assert drop_time[0] == drop_time[1]
