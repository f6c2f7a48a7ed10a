"""Distillation in several processes: ``torchrun --nproc_per_node N -m spiralprune.pipeline.distill.ddp JOB.json``.

The processes receive nothing pickled. A JSON job file names the student and teacher (model specs as
``spiralprune.pipeline.source.load_source`` reads them, plus optional safetensors weights), the data (a
run config's ``data`` block and the input shape, as ``spiralprune.pipeline.data.load_data`` reads them) and the
distillation config, the task (so a segmenter or detector trains with its own loss and metric) and, for a
share of the training set, its indices. Every process builds the same objects from it and calls ``distill``
inside a process group (gloo on CPU, NCCL on GPU), on one node or several; rank 0 writes
``student.safetensors`` and ``result.json`` to the job's output directory, and the distillation checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from safetensors.torch import save
from torch import nn
from torch.utils.data import Subset

from spiralprune.core.atomic import write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.deploy.strict import Strict
from spiralprune.pipeline.config import DataConfig, DistributedConfig
from spiralprune.pipeline.data import load_data
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import DistillResult, distill
from spiralprune.pipeline.nodes import Board
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.specs import trusting_model_code
from spiralprune.pipeline.tasks import TaskConfig, build_task
from spiralprune.pipeline.torchrun import job_main, read_job, run_torchrun

STUDENT_WEIGHTS = "student.safetensors"
RESULT = "result.json"
_ERROR_PREFIX = "spiralprune distill: error: "


class ModelRef(Strict):
    spec: str
    weights: Path | None = None


class DataRef(DataConfig):
    """A run config's ``data`` block (its loader settings too) and the input shape the data is made for."""

    input_shape: list[int]


class DistillJob(Strict):
    student: ModelRef
    teacher: ModelRef | None = None
    data: DataRef
    config: DistillConfig = DistillConfig()
    task: TaskConfig = TaskConfig()
    num_classes: int | None = None  # the task's classes (a run config's num_classes); None: a classifier's logits
    train_indices: list[int] | None = None  # train on this share of the training set (a run's probes)
    output_dir: Path
    checkpoint_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: one GPU per process when there are GPUs
    trust_model_code: bool = False  # import the factory a checkpoint named here records (spiralprune.pipeline.specs)
    # Factories a checkpoint named here may import without trust_model_code: those the user typed in the
    # command that wrote the job (a run's model spec, which its checkpoints record).
    typed_specs: list[str] = []


def model_from_ref(ref: ModelRef) -> nn.Module:
    return load_source(ref.spec, ref.weights).module


def run_job(job: DistillJob) -> DistillResult:
    """Run the job in this process; under ``torchrun`` it joins the process group the launcher describes."""
    launched = "WORLD_SIZE" in os.environ and not dist.is_initialized()
    device = _process_device(job.device)
    if launched:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        with trusting_model_code(job.trust_model_code, typed=job.typed_specs):
            student = model_from_ref(job.student)
            teacher = model_from_ref(job.teacher) if job.teacher is not None else None
        data = load_data(job.data, job.data.input_shape)
        train = data.train if job.train_indices is None else Subset(data.train, job.train_indices)
        result = distill(student, teacher, train, data.val, job.config, checkpoint_dir=job.checkpoint_dir,
                         device=device, loading=data.loading, task=build_task(job.task, job.num_classes))
        if not dist.is_initialized() or dist.get_rank() == 0:
            weights = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items()}
            write_bytes(job.output_dir / STUDENT_WEIGHTS, save(weights))
            write_json(job.output_dir / RESULT, dataclasses.asdict(result))
        if dist.is_initialized():  # every rank done before any tears the group down: a gloo rank torn down
            dist.barrier()  # while rank 0 still wrote its result aborted once (SIGABRT, clean clone, 2026-12-06)
        return result
    finally:
        if launched:
            dist.destroy_process_group()


def _process_device(choice: str) -> str:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise InputError("the distillation job asks for cuda, but no GPU is visible")
    local_rank, count = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
    if local_rank >= count:
        raise InputError(f"process {local_rank} has no GPU of its own: {count} visible; start at most {count} per node")
    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}"


def launch(job: DistillJob, job_path: Path, distributed: DistributedConfig,
           board: Board | None = None) -> DistillResult:
    """Write ``job`` to ``job_path``, run it under ``torchrun`` with ``distributed``'s processes, nodes and
    rendezvous, announced on ``board`` with several nodes (``spiralprune.pipeline.torchrun``), read the
    result. A failed job is one line naming torchrun's log (``LOG`` beside the job); interrupted, none of
    its processes is left writing."""
    write_json(job_path, job.model_dump(mode="json"))
    then = "; its checkpoint is kept: resumed (spiralprune run --resume), it goes on from its last finished epoch"
    run_torchrun("spiralprune.pipeline.distill.ddp", job_path, distributed, what="distributed training",
                 error_prefix=_ERROR_PREFIX, then=then if job.checkpoint_dir is not None else "", board=board)
    return DistillResult(**json.loads((job.output_dir / RESULT).read_text()))


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, "python -m spiralprune.pipeline.distill.ddp", __doc__.splitlines()[0],
                    lambda path: run_job(read_job(path, DistillJob, "distillation job")), _ERROR_PREFIX)


if __name__ == "__main__":
    sys.exit(main())
