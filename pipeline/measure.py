"""Measure candidates: export, parity, accuracy and size; latency alone or paired with other models on the target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import Dataset

from deploy.atomic import write_json
from deploy.profiler import Paired, Profile, Target, profile_model, profile_paired
from deploy.verdict import Question
from pipeline.config import RunConfig
from pipeline.evaluate import evaluate_onnx
from pipeline.export import ParityResult, check_parity, export_onnx


@dataclass(frozen=True)
class CandidateMeasurement:
    """What a candidate is, apart from its latency (which is measured paired, see ``measure_paired``)."""

    onnx_path: Path
    parity: ParityResult
    metrics: dict
    params: int
    macs: int
    size_mb: float

    def summary(self) -> dict:
        return {
            "parity": self.parity.to_dict(),
            "accuracy": self.metrics["accuracy"],
            "f1_macro": self.metrics["f1_macro"],
            "params": self.params,
            "macs": self.macs,
            "size_mb": self.size_mb,
        }


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
    return Target(t.backend, config.input_shape[0], t.threads, t.precision)


def profile_on_target(onnx_path: Path, config: RunConfig, cache_dir: Path) -> Profile:
    """``onnx_path`` profiled alone on the run's target at the run's batch, with the run's profile settings."""
    target = target_of(config)
    return profile_model(
        onnx_path, target.backend, batch_sizes=(target.batch,), threads=target.threads, precision=target.precision,
        settings=config.target.profile, cache_dir=cache_dir,
    )


def measure_paired(models: dict[str, Path], config: RunConfig, questions: Sequence[Question], cache_dir: Path) -> Paired:
    """``models`` (name -> ONNX) measured together in rounds on the run's target; the questions judged."""
    return profile_paired(models, target_of(config), config.target.profile, questions, cache_dir=cache_dir)


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    macs, params = tp.utils.count_ops_and_params(model.eval(), example_input)
    return int(macs), int(params)


def measure_candidate(
    model: nn.Module,
    directory: Path,
    *,
    config: RunConfig,
    example_input: torch.Tensor,
    parity_inputs: torch.Tensor,
    val_set: Dataset,
) -> CandidateMeasurement:
    """Write ``model.onnx`` and ``eval.json`` under ``directory``: parity with torch, accuracy, size."""
    onnx_path = export_onnx(model, example_input, directory / "model.onnx")
    parity = check_parity(
        model,
        onnx_path,
        parity_inputs,
        atol=config.parity.atol,
        min_top1_agreement=config.parity.min_top1_agreement,
    )
    metrics = evaluate_onnx(onnx_path, val_set, config.num_classes)
    macs, params = count_macs_params(model, example_input)
    write_json(directory / "eval.json", {"metrics": metrics, "parity": parity.to_dict(), "macs": macs, "params": params})
    return CandidateMeasurement(onnx_path, parity, metrics, params, macs, onnx_path.stat().st_size / 1e6)
