"""What a run measures of its models: the evidence apart from latency (export, parity, the task's metrics, size),
and latency alone or paired with other models on the target."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import Dataset

from spiralprune.core.atomic import write_json
from spiralprune.deploy.layer_profile import LAYER_BACKENDS
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.profiler import MeasuringSession, Paired, Profile, Target, profile_model
from spiralprune.deploy.sampling import Rounds
from spiralprune.deploy.verdict import Question
from spiralprune.pipeline.acceptance import Evidence
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.evaluate import evaluate_onnx
from spiralprune.pipeline.export import check_parity, export_onnx
from spiralprune.pipeline.tasks import Task


def latency_summary(profile: Profile, statistic: str) -> dict:
    m = profile.measurements[0]
    return {
        "latency_ms": {name: profile.stat(name) for name in ("p50", "p90", "p95", "p99", "mean")},
        "statistic_ms": profile.stat(statistic),
        "cv": m.stats["cv"],
        "robust_cv": m.stats["robust_cv"],
        "stable": m.stable,
    }


def target_of(config: RunConfig) -> Target:
    t = config.target
    return Target(t.backend, config.input_shape[0], t.threads, t.precision, t.backend_options())


def live_module(config: RunConfig, module: nn.Module) -> dict[str, Any]:
    """The backend options of one model: on a torch target a copy of its module (the runner moves
    it to the target's device and precision; the run's own module keeps training on the CPU)."""
    return {"module": copy.deepcopy(module)} if config.target.runs_live_module else {}


def profile_on_target(onnx_path: Path, module: nn.Module, config: RunConfig, cache_dir: Path) -> Profile:
    """``module`` (exported as ``onnx_path``) profiled alone on the run's target at the run's batch,
    with the run's profile settings: the ONNX file, or on a torch target the module itself."""
    target = target_of(config)
    return profile_model(
        onnx_path, target.backend, batch_sizes=(target.batch,), threads=target.threads, precision=target.precision,
        settings=config.target.profile, cache_dir=cache_dir,
        backend_options={**target.options, **live_module(config, module)},
    )


def measuring_session(config: RunConfig, cache_dir: Path) -> MeasuringSession:
    """A session on the run's target whose compiled files live in ``cache_dir`` (the run folder's ``compiled/``)."""
    return MeasuringSession(target_of(config), cache_dir)


def measure_paired(
    session: MeasuringSession, models: dict[str, tuple[Path, nn.Module]], config: RunConfig,
    questions: Sequence[Question], layers: Collection[str] = (), prior: Rounds | None = None,
) -> Paired:
    """``models`` (name -> (ONNX export, module)) measured together in rounds in ``session`` (the ONNX files,
    or on a torch target the modules); the questions judged. The models named in ``layers`` get a per-layer
    profile where the target gives one (``spiralprune.deploy.layer_profile``); ``prior``: an earlier session of
    the same models, continued (``spiralprune.deploy.sampling``)."""
    return session.paired(
        {name: path for name, (path, _) in models.items()}, config.target.profile, questions,
        model_options={name: live_module(config, m) for name, (_, m) in models.items()},
        layers=layers if config.target.backend in LAYER_BACKENDS else (), prior=prior,
    )


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    macs, params = tp.utils.count_ops_and_params(model.eval(), example_input)
    return int(macs), int(params)


def evidence_of(
    model: nn.Module,
    directory: Path,
    *,
    config: RunConfig,
    example_input: torch.Tensor,
    parity_inputs: torch.Tensor,
    val_set: Dataset,
    task: Task,
) -> Evidence:
    """Write ``model.onnx`` and ``eval.json`` under ``directory``: the model's evidence apart from its latency
    (which is measured paired, see ``measure_paired``): parity with torch, the task's metrics, size."""
    onnx_path = export_onnx(model, example_input, directory / "model.onnx")
    parity = check_parity(
        model,
        onnx_path,
        parity_inputs,
        config.budget.parity,
        task=task,
    )
    metrics = evaluate_onnx(onnx_path, val_set, task)
    file = ModelFile.of(onnx_path)
    write_json(directory / "eval.json", {"metrics": metrics, "parity": parity.to_dict(), "macs": file.macs,
                                         "params": file.params})
    return Evidence(metrics=metrics, parity=parity, file=file, onnx_path=onnx_path, metric=task.metric)
