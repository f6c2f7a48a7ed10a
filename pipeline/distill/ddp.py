"""Distillation in several processes: ``torchrun --nproc_per_node N -m spiral.pipeline.distill.ddp JOB.json``.

The processes receive nothing pickled. A JSON job file names the student and teacher (model specs as
``spiral.pipeline.source.load_source`` reads them, plus optional safetensors weights), the data (a
run config's ``data`` block and the input shape, as ``spiral.pipeline.data.load_data`` reads them) and the
distillation config. Every process builds the same objects from it and calls ``distill`` inside a process
group (gloo on CPU, NCCL on GPU); rank 0 writes ``student.safetensors`` and ``result.json`` to the job's
output directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors.torch import save
from torch import nn

from spiral.deploy.errors import InputError
from spiral.deploy.atomic import write_json
from spiral.pipeline.config import DataConfig
from spiral.pipeline.data import load_data
from spiral.deploy.atomic import write_bytes
from spiral.pipeline.distill.config import DistillConfig
from spiral.pipeline.distill.train import DistillResult, distill
from spiral.pipeline.source import load_source
from spiral.pipeline.specs import trusting_model_code

STUDENT_WEIGHTS = "student.safetensors"
RESULT = "result.json"
_ERROR_PREFIX = "spiral distill: error: "


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
    output_dir: Path
    checkpoint_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: one GPU per process when there are GPUs
    trust_model_code: bool = False  # import the factory a checkpoint named here records (spiral.pipeline.specs)


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
        with trusting_model_code(job.trust_model_code):
            student = model_from_ref(job.student)
            teacher = model_from_ref(job.teacher) if job.teacher is not None else None
        data = load_data(job.data, job.data.input_shape)
        result = distill(student, teacher, data.train, data.val, job.config, checkpoint_dir=job.checkpoint_dir,
                         device=device, loading=data.loading)
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


def launch(job: DistillJob, job_path: Path, processes: int) -> DistillResult:
    """Write ``job`` to ``job_path``, run it under ``torchrun`` with ``processes`` local processes, read the result."""
    write_json(job_path, job.model_dump(mode="json"))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "spiral.pipeline.distill.ddp", str(job_path),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    user_errors = [line.split(_ERROR_PREFIX, 1)[1] for line in completed.stderr.splitlines() if _ERROR_PREFIX in line]
    if user_errors:
        raise InputError(user_errors[0])
    if completed.returncode != 0:
        raise RuntimeError(f"torchrun distillation failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return DistillResult(**json.loads((job.output_dir / RESULT).read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.pipeline.distill.ddp", description=__doc__.splitlines()[0])
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
