"""Real ``Profile`` objects and gate reports built from sample lists: checks and comparisons on known data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deploy.profiler import SCHEMA_VERSION, Measurement, Profile
from deploy.stats import summarize
from pipeline.gate.checks import GateResult
from pipeline.gate.report import GateContext, gate_json


def measurement(samples_ms: Sequence[float], batch: int = 1, cv_threshold: float = 0.10) -> Measurement:
    stats = summarize(samples_ms)
    return Measurement(
        batch=batch, input_shapes={"input": [batch, 3, 16, 16]}, warmup_iterations=10, warmup_s=0.3,
        samples_ms=[float(s) for s in samples_ms], stats=stats, stable=stats["cv"] <= cv_threshold,
        stop_reason="ci_converged", throughput_per_s=batch * 1e3 / stats["mean"],
    )


def profile_from_samples(*batches: Sequence[float], cpu: str = "test CPU", start_batch: int = 1) -> Profile:
    """A profile with one measurement per sample list, at batch 1, 2, 4, ..."""
    return Profile(
        schema_version=SCHEMA_VERSION, backend="ort-cpu", model_path="model.onnx", model_sha256="0" * 64,
        fingerprint={"backend": "ort-cpu", "cpu": cpu, "threads": 1, "precision": "fp32", "gpu": None},
        runner_settings={"threads": 1}, settings={"cv_threshold": 0.10},
        measurements=[measurement(s, start_batch * 2**i) for i, s in enumerate(batches)],
    )


def latencies(median_ms: float = 2.0, n: int = 300, cv: float = 0.03, seed: int = 0) -> np.ndarray:
    """Right-skewed latencies (log-normal) around ``median_ms`` with about the given coefficient of variation."""
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(rng.normal(0.0, cv, n))


def write_gate_report(path: Path, median_ms: float, accuracy: float, created: str | None = None, seed: int = 0) -> Path:
    """A ``spiral gate`` JSON report of a model with this latency and accuracy, as a release to compare."""
    profile = profile_from_samples(latencies(median_ms, seed=seed))
    report = gate_json(GateResult([]), GateContext("model.onnx", "ort-cpu", profile, metrics={"accuracy": accuracy}))
    if created:
        report["created"] = created
    path.write_text(json.dumps(report))
    return path
