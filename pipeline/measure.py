"""Measure one candidate on the target: export, parity, compile + profile, evaluate, size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import Dataset

from deploy.atomic import write_json
from deploy.profiler import Profile, ProfileSettings, profile_model
from pipeline.config import ProfileConfig, RunConfig
from pipeline.evaluate import evaluate_onnx
from pipeline.export import ParityResult, check_parity, export_onnx


@dataclass(frozen=True)
class CandidateMeasurement:
    profile: Profile
    parity: ParityResult
    metrics: dict
    params: int
    macs: int
    size_mb: float

    def summary(self, statistic: str) -> dict:
        return {
            "latency_ms": {name: self.profile.stat(name) for name in ("p50", "p90", "p95", "p99", "mean")},
            "statistic_ms": self.profile.stat(statistic),
            "cv": self.profile.measurements[0].stats["cv"],
            "stable": self.profile.measurements[0].stable,
            "parity": self.parity.to_dict(),
            "accuracy": self.metrics["accuracy"],
            "f1_macro": self.metrics["f1_macro"],
            "params": self.params,
            "macs": self.macs,
            "size_mb": self.size_mb,
        }


def profile_settings(config: ProfileConfig) -> ProfileSettings:
    return ProfileSettings(**config.model_dump())


def profile_on_target(
    onnx_path: Path, config: RunConfig, cache_dir: Path, settings: ProfileSettings | None = None
) -> Profile:
    """``onnx_path`` profiled on the run's target at the run's batch, by default with the run's profile settings."""
    target = config.target
    return profile_model(
        onnx_path,
        target.backend,
        batch_sizes=(config.input_shape[0],),
        threads=target.threads,
        precision=target.precision,
        settings=settings or profile_settings(target.profile),
        cache_dir=cache_dir,
    )


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
    """Write ``model.onnx``, ``profile.json`` and ``eval.json`` under ``directory``."""
    onnx_path = export_onnx(model, example_input, directory / "model.onnx")
    parity = check_parity(
        model,
        onnx_path,
        parity_inputs,
        atol=config.parity.atol,
        min_top1_agreement=config.parity.min_top1_agreement,
    )
    profile = profile_on_target(onnx_path, config, directory / "compiled")
    profile.save(directory / "profile.json")
    metrics = evaluate_onnx(onnx_path, val_set, config.num_classes)
    macs, params = count_macs_params(model, example_input)
    write_json(directory / "eval.json", {"metrics": metrics, "parity": parity.to_dict(), "macs": macs, "params": params})
    return CandidateMeasurement(profile, parity, metrics, params, macs, onnx_path.stat().st_size / 1e6)
