import random
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.checkpoint import CHECKPOINT_NAME, TrainingState, load_checkpoint, save_checkpoint
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import warmup_cosine

CFG = DistillConfig(optimizer="adamw", lr=0.01)


def _training_objects(width: int = 4):
    model = nn.Sequential(nn.Conv2d(1, width, 3), nn.BatchNorm2d(width), nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(2, 1, 5, 5))
    optimizer = torch.optim.AdamW(model.parameters(), lr=CFG.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(warmup_cosine, warmup_steps=2, total_steps=10))
    return model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)


def test_round_trip_restores_weights_optimizer_scheduler_and_random_state(tmp_path) -> None:
    torch.manual_seed(0)
    model, optimizer, scheduler, scaler = _training_objects()
    for _ in range(3):
        model(torch.randn(4, 1, 5, 5)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    best = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    history = [{"epoch": 1}, {"epoch": 2}]
    state = TrainingState(2, history, best_val_quality=0.5, best_epoch=1, stale_epochs=1, best_weights=best)
    save_checkpoint(tmp_path, CFG, state, model, optimizer, scheduler, scaler)
    expected_draws = (torch.rand(3), np.random.rand(), random.random())

    fresh = _training_objects()
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    loaded = load_checkpoint(tmp_path, CFG, *fresh)

    draws = (torch.rand(3).tolist(), np.random.rand(), random.random())
    assert draws == (expected_draws[0].tolist(), *expected_draws[1:])
    assert loaded.epoch == 2 and loaded.history == state.history and loaded.stale_epochs == 1
    assert all(torch.equal(loaded.best_weights[k], v) for k, v in state.best_weights.items())
    assert all(torch.equal(fresh[0].state_dict()[k], v) for k, v in model.state_dict().items())
    assert fresh[2].last_epoch == scheduler.last_epoch == 3 and fresh[2].get_last_lr() == scheduler.get_last_lr()
    for key, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            assert torch.equal(fresh[1].state_dict()["state"][key][name], value)
    assert fresh[1].param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_no_checkpoint_means_start_over(tmp_path) -> None:
    assert load_checkpoint(tmp_path, CFG, *_training_objects()) is None


def test_a_checkpoint_of_another_config_is_refused(tmp_path) -> None:
    save_checkpoint(tmp_path, CFG, TrainingState(), *_training_objects())
    with pytest.raises(InputError, match="different distillation config"):
        load_checkpoint(tmp_path, CFG.model_copy(update={"lr": 0.02}), *_training_objects())


def test_a_checkpoint_of_another_student_is_refused(tmp_path) -> None:
    save_checkpoint(tmp_path, CFG, TrainingState(), *_training_objects(width=4))
    with pytest.raises(InputError, match="does not fit this student"):
        load_checkpoint(tmp_path, CFG, *_training_objects(width=6))


def test_a_corrupt_checkpoint_is_an_input_error_and_the_write_leaves_no_temporary_file(tmp_path) -> None:
    save_checkpoint(tmp_path, CFG, TrainingState(), *_training_objects())
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="unreadable"):
        load_checkpoint(tmp_path, CFG, *_training_objects())
