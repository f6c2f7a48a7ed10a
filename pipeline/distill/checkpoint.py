"""A distillation checkpoint per epoch, so that a killed distillation resumes where it stopped.

One safetensors file holds every tensor (student, adapters and heads, best weights so far, optimizer
state, RNG state); its JSON metadata holds the rest (epoch, history, early-stopping counters,
scheduler, scaler, numpy and Python RNG, the config). No pickles: nothing is executed on load.
The file is written to a temporary name and renamed into place, so a kill leaves the previous epoch's.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn

from spiralprune.core.atomic import write_bytes
from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.config import DistillConfig

CHECKPOINT_NAME = "distill.safetensors"
FORMAT_VERSION = 1


@dataclass
class TrainingState:
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_quality: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    best_weights: dict[str, Tensor] | None = None


def save_checkpoint(
    directory: Path,
    cfg: DistillConfig,
    state: TrainingState,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> None:
    tensors = {f"objective/{k}": v for k, v in objective.state_dict().items()}
    tensors |= {f"best/{k}": v for k, v in (state.best_weights or {}).items()}
    optimizer_state = optimizer.state_dict()
    optimizer_scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                optimizer_scalars.setdefault(str(index), {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors |= {f"rng/cuda/{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    numpy_rng = np.random.get_state()
    meta = {
        "version": FORMAT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "epoch": state.epoch,
        "history": state.history,
        "best_val_quality": state.best_val_quality,
        "best_epoch": state.best_epoch,
        "stale_epochs": state.stale_epochs,
        "stopped_early": state.stopped_early,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "optimizer_scalars": optimizer_scalars,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "numpy_rng": [numpy_rng[0], numpy_rng[1].tolist(), *numpy_rng[2:]],
        "python_rng": random.getstate(),
    }
    # safetensors refuses tensors that share storage (tied weights, views): give each its own copy.
    payload = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, {"spiral": json.dumps(meta)})
    write_bytes(directory / CHECKPOINT_NAME, payload)


def load_checkpoint(
    directory: Path,
    cfg: DistillConfig,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> TrainingState | None:
    """Restore everything ``save_checkpoint`` wrote; None when ``directory`` holds no checkpoint."""
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["spiral"])
        tensors = load_file(str(path))
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"distillation checkpoint {path} is unreadable ({exc}); delete it to start over") from None
    if meta.get("version") != FORMAT_VERSION or meta.get("config") != cfg.model_dump(mode="json"):
        raise InputError(
            f"distillation checkpoint {path} was written with a different distillation config; delete it to start over"
        )
    sections: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        section, _, name = key.partition("/")
        sections.setdefault(section, {})[name] = value
    try:
        objective.load_state_dict(sections["objective"])
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1].strip()
        raise InputError(f"distillation checkpoint {path} does not fit this student: {first_line}") from None

    optimizer_state: dict[int, dict[str, Any]] = {}
    for key, value in sections.get("optimizer", {}).items():
        index, _, name = key.partition("/")
        optimizer_state.setdefault(int(index), {})[name] = value  # load_state_dict moves it to the parameter's device
    for index, values in meta["optimizer_scalars"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    scaler.load_state_dict(meta["scaler"])

    rng = sections["rng"]
    torch.set_rng_state(rng["torch"])
    cuda_states = [rng[f"cuda/{i}"] for i in range(torch.cuda.device_count()) if f"cuda/{i}" in rng]
    if cuda_states:
        torch.cuda.set_rng_state_all(cuda_states)
    name, keys, *rest = meta["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))

    return TrainingState(
        epoch=meta["epoch"],
        history=meta["history"],
        best_val_quality=meta["best_val_quality"],
        best_epoch=meta["best_epoch"],
        stale_epochs=meta["stale_epochs"],
        stopped_early=meta["stopped_early"],
        best_weights=sections.get("best"),
    )
