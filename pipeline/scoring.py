"""A step's scoring, in the run's own process or across processes (and nodes) as a torchrun job.

``score`` is the one way a step scores its model before it plans: the criterion's scores of its channel
groups (``PrunableModel.scored``) and, when the knapsack may remove residual blocks, each block's loss rise
(``PrunableModel.block_rises``). In one process (``distributed:`` left out), or for a criterion whose work
does not split across processes (``Criterion.parallel``: only ``sensitivity`` and ``taylor-group`` do),
they are computed here. With more, the model is saved as a spiral checkpoint (its base spec, plans and
safetensors weights: nothing pickled) beside the step's example input, a JSON job names them, the data as
the run config names it, the task, the calibration draw and the pruning config, and torchrun runs
``python -m spiralprune.pipeline.scoring JOB.json`` (``spiralprune.pipeline.torchrun``). Every process
rebuilds and traces the model as the step did, draws the same calibration batches (refused unless their
digest is the run's) and calls the same criterion inside a gloo process group, where the criteria split
their groups, blocks and batches (``spiralprune.pipeline.prune.group.share``) and every process gets every
result; rank 0 writes them, and they fill the caller's ``PrunableModel``. They are one process's results
up to the order of floating-point sums (``taylor-group`` adds its batches' terms in another order). The
processes score on the CPU with the node's cores divided among them (no oversubscription); the operator
latency table stays on the target, in the run's process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from safetensors.torch import load_file, save
from torch import Tensor

from spiralprune.core.atomic import write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.data import load_data
from spiralprune.pipeline.distill.ddp import DataRef, ModelRef, model_from_ref
from spiralprune.pipeline.prune import PrunableModel, PruneConfig
from spiralprune.pipeline.prune.criteria import get_criterion
from spiralprune.pipeline.prune.group import Calibration, draw_calibration
from spiralprune.pipeline.prune.latency_aware import weighs_blocks
from spiralprune.pipeline.specs import trusted, trusting_model_code
from spiralprune.pipeline.tasks import TaskConfig, build_task
from spiralprune.pipeline.torchrun import LOG, job_main, read_job, run_torchrun
from spiralprune.pipeline.training import Processes, Trainee

SCORES = "scores.safetensors"  # per scored group root, its scores
RESULT = "result.json"  # the groups scored, in order, and the blocks' rises
EXAMPLE = "example.safetensors"  # the step's example input, which the processes trace the model with
_ERROR_PREFIX = "spiralprune scoring: error: "


class ScoringJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelRef
    example_input: Path  # safetensors, one tensor named "input"
    data: DataRef
    task: TaskConfig = TaskConfig()
    num_classes: int
    seed: int  # the calibration draw's (``draw_calibration``)
    calibration_digest: str  # of the run's calibration inputs: the processes' draw must be the same
    prune: PruneConfig
    rises: bool  # measure the residual blocks' loss rises too
    output_dir: Path
    trust_model_code: bool = False  # as in ``spiralprune.pipeline.distill.ddp.DistillJob``
    typed_specs: list[str] = []


def score(prunable: PrunableModel, model: Trainee, cfg: PruneConfig, calibration: Calibration, *, blocks: bool,
          processes: Processes | None, job_dir: Path, console: Console | None = None) -> None:
    """``cfg``'s scores of ``prunable``'s groups and, with ``blocks`` (the knapsack may remove residual blocks,
    ``weighs_blocks``), the blocks' rises, computed once into ``prunable`` on ``calibration``: here, or across
    ``processes`` as a torchrun job in ``job_dir`` (removed when it succeeds; its ``torchrun.log`` kept when
    not); a later call for the same config finds them there. ``model`` is ``prunable``'s model and its
    lineage, which the job's processes rebuild it from."""
    rises = weighs_blocks(cfg, blocks) and bool(prunable.blocks)
    if prunable.kept(cfg, rises):  # an earlier try of the step scored it
        return
    if processes is None or processes.distributed.in_process or not get_criterion(cfg.criterion).parallel:
        prunable.scored(cfg, calibration)
        if rises:
            prunable.block_rises(calibration)
        return
    assert processes.data is not None  # Processes.of_run refused given data with more than one process
    shutil.rmtree(job_dir, ignore_errors=True)
    save_checkpoint(job_dir / "model", base_spec=model.lineage[0], plans=model.lineage[1], model=model.module,
                    input_shape=processes.input_shape, input_dtype=processes.input_dtype)
    write_bytes(job_dir / EXAMPLE, save({"input": prunable.example_inputs.contiguous()}))
    everything, typed = trusted()
    job = ScoringJob(
        model=ModelRef(spec=str(job_dir / "model")), example_input=job_dir / EXAMPLE, data=processes.data,
        task=processes.task, num_classes=processes.num_classes, seed=processes.seed,
        calibration_digest=calibration_digest(calibration), prune=cfg, rises=rises, output_dir=job_dir / "out",
        trust_model_code=everything, typed_specs=sorted(typed),
    )
    if console is not None:
        console.print(f"score: {cfg.criterion}{' and the residual blocks' if rises else ''} on "
                      f"{processes.distributed.spread} (torchrun; its output in {job_dir / LOG})")
    job_path = job_dir / "job.json"
    write_json(job_path, job.model_dump(mode="json"))
    run_torchrun("spiralprune.pipeline.scoring", job_path, processes.distributed, what="distributed scoring",
                 error_prefix=_ERROR_PREFIX, board=processes.board)
    result = json.loads((job.output_dir / RESULT).read_text())
    scores = load_file(str(job.output_dir / SCORES))
    groups = prunable.groups_of(cfg)
    if result["groups"] != [g.root for g in groups]:  # the same trace gives the same groups in the same order
        raise RuntimeError(f"the scoring processes found other groups than this process: {result['groups']}")
    prunable.keep(cfg, [scores.get(g.root) for g in groups], result["rises"])
    shutil.rmtree(job_dir, ignore_errors=True)


def calibration_digest(calibration: Calibration) -> str:
    """sha256 of the calibration batches' inputs (a tensor, or the tensors of a list), in order."""
    digest = hashlib.sha256()
    for inputs, _ in calibration:
        for tensor in [inputs] if isinstance(inputs, Tensor) else inputs:
            digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_job(job: ScoringJob) -> None:
    """Run the job in this process; under ``torchrun`` it joins the process group the launcher describes,
    with its share of the node's cores (``LOCAL_WORLD_SIZE`` processes on one node do not oversubscribe it)."""
    launched = "WORLD_SIZE" in os.environ and not dist.is_initialized()
    if launched:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
        dist.init_process_group("gloo")
    try:
        with trusting_model_code(job.trust_model_code, typed=job.typed_specs):
            model = model_from_ref(job.model)
        task = build_task(job.task, job.num_classes)
        data = load_data(job.data, job.data.input_shape)
        calibration = draw_calibration(data.calibration, job.data.batch_size, data.loading.for_task(task).collate_fn,
                                       task.batch_loss, seed=job.seed)
        if calibration_digest(calibration) != job.calibration_digest:
            raise InputError(
                f"data '{job.data.source}' gave the scoring processes other calibration batches than the run drew "
                f"(seed {job.seed}): its samples are not the same in every process; score on 1 process"
            )
        prunable = PrunableModel(model, load_file(str(job.example_input))["input"])
        scored = prunable.scored(job.prune, calibration)
        rises = prunable.block_rises(calibration) if job.rises else None
        if not dist.is_initialized() or dist.get_rank() == 0:
            scores = {g.root: s.contiguous() for g, s in scored if s is not None}
            write_bytes(job.output_dir / SCORES, save(scores))
            write_json(job.output_dir / RESULT, {"groups": [g.root for g, _ in scored], "rises": rises})
        if dist.is_initialized():  # every rank done before any tears the group down (as distill.ddp's)
            dist.barrier()
    finally:
        if launched:
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, "python -m spiralprune.pipeline.scoring", __doc__.splitlines()[0],
                    lambda path: run_job(read_job(path, ScoringJob, "scoring job")), _ERROR_PREFIX)


if __name__ == "__main__":
    sys.exit(main())
