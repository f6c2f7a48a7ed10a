"""Real ``Profile`` objects and gate reports built from sample lists: checks and comparisons on known data.

Samples are split into consecutive rounds of ``ROUND`` calls, as the sampler records them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spiralprune.deploy.profiler import SCHEMA_VERSION, Measurement, Profile
from spiralprune.deploy.sampling import Series
from spiralprune.deploy.stats import robust_cv, summarize
from spiralprune.pipeline.gate.checks import GateResult
from spiralprune.pipeline.gate.report import GateContext, gate_json
from spiralprune.pipeline.tasks.metric import Metric


ROUND = 10


def measurement(samples_ms: Sequence[float], batch: int = 1, cv_threshold: float = 0.10,
                round_sizes: Sequence[int] | None = None) -> Measurement:
    stats = {**summarize(samples_ms), "robust_cv": robust_cv(samples_ms)}
    n = len(samples_ms)
    if round_sizes is None:
        round_sizes = [ROUND] * (n // ROUND) + ([n % ROUND] if n % ROUND else [])
    return Measurement(
        batch=batch, input_shapes={"input": [batch, 3, 16, 16]}, warmup_iterations=10, warmup_s=0.3,
        samples_ms=[float(s) for s in samples_ms], stats=stats, stable=stats["robust_cv"] <= cv_threshold,
        stop_reason="ci_converged", throughput_per_s=batch * 1e3 / stats["mean"],
        round_sizes=list(round_sizes),
    )


def profile_from_samples(*batches: Sequence[float], cpu: str = "test CPU", start_batch: int = 1) -> Profile:
    """A profile with one measurement per sample list, at batch 1, 2, 4, ..."""
    return Profile(
        schema_version=SCHEMA_VERSION, backend="ort-cpu", model_path="model.onnx", model_sha256="0" * 64,
        fingerprint={"backend": "ort-cpu", "cpu": cpu, "threads": 1, "precision": "fp32", "gpu": None},
        runner_settings={"threads": 1}, settings={"cv_threshold": 0.10},
        measurements=[measurement(s, start_batch * 2**i) for i, s in enumerate(batches)],
    )


def profile_from_series(series: Series) -> Profile:
    """The profile of one model of a paired session, with its rounds as the sampler ran them."""
    profile = profile_from_samples(series.samples_ms)
    profile.measurements[0] = measurement(series.samples_ms, round_sizes=[len(b) for b in series.blocks])
    return profile


def latencies(median_ms: float = 2.0, n: int = 300, cv: float = 0.03, seed: int = 0) -> np.ndarray:
    """Right-skewed latencies (log-normal) around ``median_ms`` with about the given coefficient of variation."""
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(rng.normal(0.0, cv, n))


def write_gate_report(path: Path, median_ms: float, quality: float, created: str | None = None, seed: int = 0,
                      metric: Metric = Metric()) -> Path:
    """A ``spiralprune gate`` JSON report of a model with this latency and quality (its ``metric``, as a
    fraction), as a release to compare."""
    profile = profile_from_samples(latencies(median_ms, seed=seed))
    report = gate_json(GateResult([]), GateContext("model.onnx", "ort-cpu", profile, metrics={metric.name: quality},
                                                   metric=metric))
    if created:
        report["created"] = created
    path.write_text(json.dumps(report))
    return path
