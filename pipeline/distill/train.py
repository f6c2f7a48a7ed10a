"""The distillation loop: student from teacher (or the task's loss alone without one), one or many processes.

Under ``torchrun`` (a process group already initialised) the same function trains with
DistributedDataParallel: ``cfg.batch_size`` is the global batch, split evenly across processes, and
every process evaluates the whole validation split (a task's metric, mIoU or mAP, does not add up
over shards), so that every process takes the same early-stopping decision.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from spiralprune.core.errors import InputError
from spiralprune.pipeline.data import LoaderSettings
from spiralprune.pipeline.distill.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.objective import build_objective
from spiralprune.pipeline.evaluate import evaluate_model
from spiralprune.pipeline.tasks import Task, build_task

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class DistillResult:
    best_val_quality: float
    epochs_run: int
    history: list[dict]
    stopped_early: bool


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, batches: int, task: Task) -> None:
    """Re-estimate batch-norm running statistics as a plain average over ``batches`` training batches
    (pruning leaves statistics that describe channels which no longer exist), through the forward that
    training runs (``task.forward_loss``: a torchvision detector's train-mode forward takes targets)."""
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms or batches <= 0:
        return
    device = next(model.parameters()).device
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average instead of an exponential one
    model.train()
    try:
        for index, (inputs, targets) in enumerate(loader):
            if index >= batches:
                break
            task.forward_loss(model, inputs.to(device), task.to_device(targets, device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    train_set: Dataset,
    val_set: Dataset,
    cfg: DistillConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
    loading: LoaderSettings = LoaderSettings(),
    task: Task | None = None,
) -> DistillResult:
    """Train ``student`` in place and leave it, in eval mode, at its best validation quality: ``task``'s
    metric (None: a classifier's top-1 accuracy).

    Seeds the global torch RNG with ``cfg.seed``: on CPU, the same inputs give bitwise the same weights,
    also across a kill and resume; on CUDA, cuDNN's default kernels add run-to-run noise. With
    ``checkpoint_dir``, a checkpoint is written after every epoch and an existing one is resumed from
    (same config required). Batch-norm statistics are recalibrated before the first epoch (not on
    resume: the checkpoint holds them). ``cfg.precision`` bf16/fp16 applies on CUDA only. ``loading``: the
    training DataLoaders' workers, pinned memory and collate function (``spiralprune.pipeline.data``).
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if cfg.batch_size % world:
        raise InputError(f"distill.batch_size {cfg.batch_size} does not split evenly across {world} processes")
    local_batch = cfg.batch_size // world
    torch_device = torch.device(device)
    amp_dtype = _AMP_DTYPES.get(cfg.precision) if torch_device.type == "cuda" else None
    if cfg.precision != "fp32" and amp_dtype is None:
        log.warning("distill.precision %s needs CUDA; training in fp32 on %s", cfg.precision, device)
    torch.manual_seed(cfg.seed)
    task = task or build_task()
    loading = loading.for_task(task)

    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    if len(sampler) < local_batch:
        raise InputError(
            f"the training set has {len(train_set)} samples, fewer than one batch of {cfg.batch_size}; "
            "lower distill.batch_size"
        )
    loader = loading.loader(train_set, torch_device, batch_size=local_batch, sampler=sampler, drop_last=True)

    student.to(torch_device)
    if teacher is not None:
        teacher.to(torch_device)
    sample = loading.collate_fn([train_set[i] for i in range(min(2, len(train_set)))])[0].to(torch_device)
    objective, teacher_runner = build_objective(student, teacher, cfg, sample, task)
    objective.to(torch_device)

    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(cfg.warmup_epochs * steps_per_epoch))
    optimizer = _make_optimizer(objective, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps)
    )
    scaler = torch.amp.GradScaler(torch_device.type, enabled=amp_dtype == torch.float16)

    state = None
    if checkpoint_dir is not None:
        state = load_checkpoint(checkpoint_dir, cfg, objective, optimizer, scheduler, scaler)
    if state is None:
        state = TrainingState()
        recalibration = loading.loader(
            train_set, torch_device, batch_size=local_batch, shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        recalibrate_batchnorm(student, recalibration, cfg.bn_recalibration_batches, task)

    model: nn.Module = objective
    collective_device = torch_device if distributed else None
    if distributed:
        device_ids = [torch_device.index] if torch_device.type == "cuda" else None
        # With neither label nor logit loss, layers after the last hinted stage get no gradient.
        unused = teacher is not None and cfg.weights.ce == 0 and cfg.weights.logits == 0
        model = DistributedDataParallel(objective, device_ids=device_ids, find_unused_parameters=unused)
    bar = None
    if progress is not None and rank == 0:
        verb = "distill" if teacher is not None else "train"
        bar = progress.add_task(verb, total=total_steps, completed=state.epoch * steps_per_epoch)

    try:
        while state.epoch < cfg.epochs and not state.stopped_early:
            started = time.perf_counter()
            sampler.set_epoch(state.epoch)
            model.train()
            sums: dict[str, float] = {}
            seen = 0
            for images, targets in loader:
                images = images.to(torch_device, non_blocking=True)
                targets = task.to_device(targets, torch_device)
                count = task.count(targets)
                with torch.autocast(torch_device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    teacher_out = teacher_runner(images) if teacher_runner is not None else None
                    loss, parts = model(images, targets, teacher_out)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scale = scaler.get_scale() if scaler.is_enabled() else None
                scaler.update()
                if scale is None or scaler.get_scale() >= scale:  # fp16 skipped an overflowing step: keep the lr
                    scheduler.step()
                for name, value in {"loss": loss.detach(), **parts}.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * count
                seen += count
                if bar is not None:
                    progress.update(  # type: ignore[union-attr]
                        bar,
                        advance=1,
                        description=f"{verb} epoch {state.epoch + 1}/{cfg.epochs} · loss {sums['loss'] / seen:.3f}"
                        + (f" · val {task.metric} {state.history[-1]['val_quality']:.3g}" if state.history else ""),
                    )
            totals = _sum_over_processes([*sums.values(), seen], collective_device)
            epoch_stats = dict(zip(sums, totals[:-1]))
            if distributed:
                for buffer in objective.buffers():  # batch-norm statistics differ per process: use rank 0's
                    dist.broadcast(buffer, 0)
            quality = evaluate_model(student, val_set, task)[task.metric]
            state.epoch += 1
            if state.best_epoch == 0 or task.quality().worse_by(quality, state.best_val_quality) < 0:
                state.best_val_quality, state.best_epoch, state.stale_epochs = quality, state.epoch, 0
                state.best_weights = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
            else:
                state.stale_epochs += 1
                patience = cfg.early_stopping_patience
                state.stopped_early = patience is not None and state.stale_epochs >= patience
            state.history.append(
                {
                    "epoch": state.epoch,
                    "lr": scheduler.get_last_lr()[0],
                    **{_history_key(name): value / totals[-1] for name, value in epoch_stats.items()},
                    "val_quality": quality,
                    "precision": cfg.precision if amp_dtype is not None else "fp32",
                    "device": torch_device.type,
                    "processes": world,
                    "seconds": time.perf_counter() - started,
                }
            )
            if bar is not None and not progress.console.is_terminal:  # type: ignore[union-attr]
                # A log file gets no live bar: one line per epoch keeps CI output readable.
                progress.console.print(  # type: ignore[union-attr]
                    f"{verb} epoch {state.epoch}/{cfg.epochs}: loss {state.history[-1]['loss']:.3f}, "
                    f"val {task.metric} {quality:.4g}"
                )
            if checkpoint_dir is not None and rank == 0:
                save_checkpoint(checkpoint_dir, cfg, state, objective, optimizer, scheduler, scaler)
    finally:
        objective.close()
        if teacher_runner is not None:
            teacher_runner.close()

    if state.best_weights is not None:
        student.load_state_dict(state.best_weights)
    student.eval()
    return DistillResult(state.best_val_quality, state.epoch, state.history, state.stopped_early)


def _history_key(name: str) -> str:
    return name if name == "loss" else f"loss_{name}"


def _make_optimizer(objective: nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    params = [p for p in objective.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sum_over_processes(values: list[float], device: torch.device | None) -> list[float]:
    """Sum over all processes (``device`` is where the collective runs; None when there is one process)."""
    if device is None:
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()

