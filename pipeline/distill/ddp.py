"""Distillation in several processes: ``torchrun --nproc_per_node N -m spiralprune.pipeline.distill.ddp JOB.json``.

The processes receive nothing pickled. A JSON job file names the student and teacher (model specs as
``spiralprune.pipeline.source.load_source`` reads them, plus optional safetensors weights), the data (a
run config's ``data`` block and the input shape, as ``spiralprune.pipeline.data.load_data`` reads them) and the
distillation config, the task (so a segmenter or detector trains with its own loss and metric) and, for a
share of the training set, its indices. Every process builds the same objects from it and calls ``distill``
inside a process group (gloo on CPU, NCCL on GPU); rank 0 writes ``student.safetensors`` and ``result.json``
to the job's output directory, and the distillation checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors.torch import save
from torch import nn
from torch.utils.data import Subset

from spiralprune.core.atomic import write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DataConfig, DistributedConfig
from spiralprune.pipeline.data import load_data
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import DistillResult, distill
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.specs import trusting_model_code
from spiralprune.pipeline.tasks import TaskConfig, build_task

STUDENT_WEIGHTS = "student.safetensors"
RESULT = "result.json"
LOG = "torchrun.log"  # beside the job file: torchrun's and every process's output
_ERROR_PREFIX = "spiralprune distill: error: "


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    spec: str
    weights: Path | None = None


class DataRef(DataConfig):
    """A run config's ``data`` block (its loader settings too) and the input shape the data is made for."""

    input_shape: list[int]


class DistillJob(_Strict):
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


def read_job(path: Path) -> DistillJob:
    try:
        return DistillJob.model_validate_json(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read distillation job {path}: {exc.strerror}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InputError(f"distillation job {path}: {where}: {error['msg']}") from None


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


def launch(job: DistillJob, job_path: Path, distributed: DistributedConfig) -> DistillResult:
    """Write ``job`` to ``job_path``, run it under ``torchrun`` with ``distributed``'s processes, nodes and
    rendezvous, read the result. torchrun's output goes to ``LOG`` beside the job; a failed job is one line
    (the job's own bad input, or which process died and how) naming that log. Interrupted (Ctrl-C,
    SIGTERM), torchrun is asked to stop its processes before this returns: none is left writing."""
    write_json(job_path, job.model_dump(mode="json"))
    if distributed.nnodes == 1:
        rendezvous = ["--standalone"]
    else:  # static rendezvous: node 0 at rdzv_endpoint, every node told its rank
        rendezvous = [f"--nnodes={distributed.nnodes}", f"--node-rank={distributed.node_rank}",
                      f"--rdzv-endpoint={distributed.rdzv_endpoint}"]
    command = [
        sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc-per-node={distributed.processes}",
        "-m", "spiralprune.pipeline.distill.ddp", str(job_path),
    ]  # fmt: skip
    log = job_path.with_name(LOG)
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            returncode = process.wait()
        except BaseException:
            process.send_signal(signal.SIGTERM)  # torchrun stops its workers (SIGKILL would orphan them)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    text = log.read_text(errors="replace")
    user_errors = [line.split(_ERROR_PREFIX, 1)[1] for line in text.splitlines() if _ERROR_PREFIX in line]
    if user_errors:
        raise InputError(user_errors[0])
    if returncode != 0:
        raise _failure(text, returncode, log, job.checkpoint_dir is not None)
    return DistillResult(**json.loads((job.output_dir / RESULT).read_text()))


def _failure(text: str, returncode: int, log: Path, resumable: bool) -> Exception:
    """One line for a failed torchrun: the first process that failed (torchrun's "Root Cause") and how.
    A process killed by a signal (the kernel's OOM killer, an operator) is the environment's doing, bad
    input (exit 2); one that exited with an error is an internal error, its traceback in ``log``."""
    cause = text.rpartition("Root Cause")[2]
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", cause, re.MULTILINE)
    code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)", cause, re.MULTILINE)
    who = f"rank {rank.group(1)}" if rank else "torchrun"
    exitcode = int(code.group(1)) if code else returncode
    then = "; its checkpoint is kept: resumed (spiralprune run --resume), it goes on from its last finished epoch"
    then = then if resumable else ""
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
        return InputError(f"distributed training failed: {who} was killed by {name}; torchrun's output is in "
                          f"{log}{then}")
    return RuntimeError(f"distributed training failed: {who} exited with {exitcode}; torchrun's output and its "
                        f"traceback are in {log}{then}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiralprune.pipeline.distill.ddp", description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="JSON distillation job file")
    args = parser.parse_args(argv)
    try:
        run_job(read_job(args.job))
    except InputError as exc:
        print(f"{_ERROR_PREFIX}{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
