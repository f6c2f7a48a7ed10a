"""A step's scoring across torchrun processes (gloo) is one process's, up to the order of float sums."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DistributedConfig
from spiralprune.pipeline.data import load_data
from spiralprune.pipeline.distill.ddp import DataRef
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan
from spiralprune.pipeline.prune.group import Calibration, draw_calibration
from spiralprune.pipeline.prune.latency_aware import plans_for_latency
from spiralprune.pipeline.scoring import ScoringJob, run_job, score
from spiralprune.pipeline.tasks import TaskConfig, build_task
from spiralprune.pipeline.torchrun import LOG
from spiralprune.pipeline.training import Processes, Trainee
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet
from tests.processes import raised, torchrun_worker

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[2,2,2,1]"
SHAPE = [1, 1, 16, 16]
DATA = DataRef(source="digits", batch_size=32, input_shape=SHAPE)
TWO = Processes(DistributedConfig(processes=2), DATA, TaskConfig(), 10, SHAPE, "float32", seed=0)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, Calibration, torch.Tensor]:
    """The tiny ResNet trained for 5 steps (each block then raises the loss, by different amounts; after
    10 steps none does, its batch-norm statistics lagging), the run's calibration draw
    and an example input."""
    data = load_data(DATA, SHAPE)
    torch.manual_seed(0)
    model = digits_resnet(width=8, blocks=(2, 2, 2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _, (inputs, labels) in zip(range(5), loader):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    model.eval()
    calibration = draw_calibration(data.calibration, 32, None, build_task(TaskConfig(), 10).batch_loss, seed=0)
    return model, calibration, calibration[0][0][:1]


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["sensitivity", "taylor-group"])
def test_two_processes_score_as_one_and_give_the_same_plans(tmp_path: Path, trained, criterion: str) -> None:
    model, calibration, example = trained
    cfg = PruneConfig(criterion=criterion, ratio=0.5, global_pruning=True)
    one, two = PrunableModel(model, example), PrunableModel(model, example)
    score(one, Trainee(model, (SPEC, [])), cfg, calibration, blocks=True, processes=None, job_dir=tmp_path / "one")
    score(two, Trainee(model, (SPEC, [])), cfg, calibration, blocks=True, processes=TWO, job_dir=tmp_path / "two")

    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()  # in process; the job went
    for (group, a), (other, b) in zip(one.scored(cfg, None), two.scored(cfg, None), strict=True):
        assert group.root == other.root and (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-12)  # taylor-group sums its batches in another order
    assert two.block_rises(None) == pytest.approx(one.block_rises(None), rel=1e-9, abs=1e-12)
    assert len(one.blocks) == 4 and all(rise > 0 for rise in one.block_rises(None))
    assert one.uniform_plan(cfg) == two.uniform_plan(cfg)
    macs = sum(layer.op.macs() for layer in one.layers(PruningPlan(criterion, 0.0, ())))
    allocations = [plans_for_latency(p, cfg, [f * macs for f in (0.7, 0.5, 0.3)], cost="macs", calibration=calibration,
                                     blocks=True) for p in (one, two)]
    assert [a.plan for a in allocations[0]] == [a.plan for a in allocations[1]]
    assert len({a.plan for a in allocations[0]}) == 3  # three plans, each decided by the scores


@pytest.mark.slow
def test_a_killed_process_is_one_line(tmp_path: Path, trained) -> None:
    model, calibration, example = trained
    prunable, job_dir = PrunableModel(model, example), tmp_path / "scoring"
    failure: list[BaseException] = []
    call = lambda: score(prunable, Trainee(model, (SPEC, [])), PruneConfig(criterion="sensitivity"),  # noqa: E731
                         calibration, blocks=True, processes=TWO, job_dir=job_dir)
    thread = threading.Thread(target=lambda: failure.extend(raised(call)))
    thread.start()
    deadline = time.time() + 60
    while (pid := torchrun_worker(job_dir / "job.json", 1)) is None:
        assert thread.is_alive() and time.time() < deadline
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)

    (error,) = failure
    assert isinstance(error, InputError), error
    message = str(error)
    assert message.startswith("distributed scoring failed: rank 1 was killed by SIGKILL; torchrun's output is in ")
    assert "\n" not in message and (job_dir / LOG).exists()
    assert not prunable.kept(PruneConfig(criterion="sensitivity"), rises=False)


def test_a_job_whose_data_draws_other_calibration_batches_is_refused(tmp_path: Path, trained) -> None:
    model, calibration, example = trained
    job = ScoringJob(model=dict(spec=SPEC), example_input=tmp_path / "example.safetensors", data=DATA,
                     num_classes=10, seed=1, calibration_digest="0" * 64, prune=PruneConfig(criterion="sensitivity"),
                     rises=False, output_dir=tmp_path / "out")
    with pytest.raises(InputError, match=r"other calibration batches than the run drew \(seed 1\)"):
        run_job(job)
