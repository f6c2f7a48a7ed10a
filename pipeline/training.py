"""Every training of a run, in the run's own process or across processes and nodes as a torchrun job.

``train`` is the one way a run trains a model: the teacher's training, each try's distillation, the
probes and the final recovery call it. With one process (``distributed:`` left out) it is ``distill``
in this process, as before. With more, the student and teacher are saved as spiral checkpoints (their
base spec and pruning plans, safetensors weights: nothing pickled), a JSON job names them, the data as
the run config names it, the task and the training's settings (``spiralprune.pipeline.distill.ddp``), torchrun
runs it with the run's rendezvous settings, and the trained weights are loaded back into the caller's
module: the caller cannot tell the two apart but by the result's ``processes``. The job's rank 0 writes
every file (checkpoints, weights, result); the run's ledger and step folders stay the run's own. On
several nodes the run is node 0's and the job is announced to the other nodes' followers
(``spiralprune.pipeline.nodes``), which join it: the run folder is on a filesystem they all see.

The quantization-aware recovery (``spiralprune.pipeline.passes.int8.fake_quant``) is not among them: it trains a module
whose convolutions carry simulated-INT8 parametrizations and hooks, which no checkpoint records.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, Subset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.config import DistributedConfig, RunConfig
from spiralprune.pipeline.data import LoaderSettings
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.ddp import STUDENT_WEIGHTS, DataRef, DistillJob, ModelRef, launch
from spiralprune.pipeline.distill.train import DistillResult, distill
from spiralprune.pipeline.nodes import Board
from spiralprune.pipeline.specs import trusted
from spiralprune.pipeline.tasks import Task, TaskConfig
from spiralprune.pipeline.torchrun import LOG

if TYPE_CHECKING:
    from rich.progress import Progress

Lineage = tuple[str, list]  # a module's base spec and pruning plans: how a checkpoint rebuilds it


@dataclass(frozen=True)
class Trainee:
    """A module to train (or to learn from) and its lineage, which a torchrun job's processes rebuild it from."""

    module: nn.Module
    lineage: Lineage


@dataclass(frozen=True)
class Processes:
    """Where a run's trainings and its criteria's scoring run (``distributed``) and what a torchrun job's
    processes rebuild the rest from: the data as the run config names it, the task and its classes, the
    input the checkpoints record, the seed of the calibration draw."""

    distributed: DistributedConfig
    data: DataRef | None
    task: TaskConfig
    num_classes: int
    input_shape: list[int]
    input_dtype: str
    seed: int = 0  # the run's: its calibration batches are drawn with it (``spiralprune.pipeline.scoring``)
    board: Board | None = None  # with more than one node: where node 0 announces each job to the others

    @classmethod
    def of_run(cls, config: RunConfig, input_dtype: str, given_data: bool, board: Board | None = None) -> Processes:
        """The run's, its jobs announced on ``board`` (``spiralprune.pipeline.nodes.announcing``); one line,
        before any work, for what cannot train across processes here: data given as Python objects
        (``spiralprune.shrink``), which cannot cross to other processes."""
        if given_data and not config.distributed.in_process:
            raise InputError(
                f"distributed training on {config.distributed.processes} processes reads the data in every process: "
                "data given as Python objects cannot cross to them; name it in a run config's data: block (an "
                "ImageFolder, a package.module:factory) or train on 1 process"
            )
        config.distributed.training_device()  # cuda asked where no GPU is visible: one line, before any work
        data = None if given_data else DataRef(**config.data.model_dump(), input_shape=config.input_shape)
        return cls(config.distributed, data, config.task, config.num_classes, config.input_shape, input_dtype,
                   config.seed, board)


def train(
    student: Trainee, teacher: Trainee | None, train_set: Dataset, val_set: Dataset, cfg: DistillConfig, *,
    job_dir: Path, processes: Processes | None = None, share: Sequence[int] | None = None,
    checkpoint_dir: Path | None = None, progress: Progress | None = None,
    loading: LoaderSettings = LoaderSettings(), task: Task | None = None,
) -> DistillResult:
    """``distill`` of ``student`` from ``teacher`` (on ``share``, indices of ``train_set``, when given) on
    ``processes``' device, in this process when ``processes`` is None or one process, else as a torchrun
    job in ``job_dir`` (removed when it succeeds; its ``torchrun.log`` kept when not). ``student.module`` is
    trained in place and left on the CPU (where the run exports and measures) in eval mode at its best
    validation quality either way; ``checkpoint_dir`` resumes either way."""
    distributed = processes.distributed if processes is not None else DistributedConfig()
    if distributed.in_process:
        train_subset = train_set if share is None else Subset(train_set, list(share))
        try:
            return distill(student.module, teacher.module if teacher else None, train_subset, val_set, cfg,
                           checkpoint_dir=checkpoint_dir, progress=progress, device=distributed.training_device(),
                           loading=loading, task=task)
        finally:
            for trainee in (student, teacher):
                if trainee is not None:
                    trainee.module.cpu()
    assert processes.data is not None  # Processes.of_run refused given data with more than one process
    shutil.rmtree(job_dir, ignore_errors=True)
    refs = {}
    for name, trainee in (("student", student), ("teacher", teacher)):
        if trainee is not None:
            save_checkpoint(job_dir / name, base_spec=trainee.lineage[0], plans=trainee.lineage[1],
                            model=trainee.module, input_shape=processes.input_shape, input_dtype=processes.input_dtype)
            refs[name] = ModelRef(spec=str(job_dir / name))
    everything, typed = trusted()
    job = DistillJob(
        **refs, data=processes.data, config=cfg, task=processes.task, num_classes=processes.num_classes,
        train_indices=None if share is None else list(share), output_dir=job_dir / "out",
        checkpoint_dir=checkpoint_dir, device=distributed.device, trust_model_code=everything,
        typed_specs=sorted(typed),
    )
    if progress is not None:
        progress.console.print(f"{'distill' if teacher else 'train'}: {cfg.epochs} epochs on "
                               f"{processes.distributed.spread} (torchrun; its output in {job_dir / LOG})")
    result = launch(job, job_dir / "job.json", processes.distributed, board=processes.board)
    student.module.load_state_dict(load_file(str(job.output_dir / STUDENT_WEIGHTS)))
    student.module.eval()
    if progress is not None:
        for h in result.history:
            progress.console.print(f"epoch {h['epoch']}/{cfg.epochs} on {h['processes']} processes: "
                                   f"loss {h['loss']:.3f}, val {h['val_quality']:.4g}")
    shutil.rmtree(job_dir, ignore_errors=True)
    return result
