"""The latency profiler: time-based warm-up, adaptive sampling, percentiles and a stable flag.

For each batch size: one first call (which may compile or allocate), then ``warmup_s`` seconds of
warm-up, then sample until both ``min_samples`` and
``min_duration_s`` are reached and the 95 % confidence interval of the median is within
``±ci_rel`` of it (``ci_rel = 0`` turns the early stop off), or until ``max_duration_s``. A measurement is ``stable`` when its coefficient
of variation is at most ``cv_threshold``, as ``trtexec`` judges it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Runner, get_backend
from deploy.backends.base import TraceRunner
from deploy.atomic import write_bytes
from deploy.backends.inputs import make_inputs
from deploy.errors import InputError
from deploy.fingerprint import file_sha256, target_fingerprint
from deploy.stats import median_ci_rel, summarize

SCHEMA_VERSION = 1
STAT_NAMES = ("p50", "p90", "p95", "p99", "mean", "stdev", "cv", "min", "max")


@dataclass(frozen=True)
class ProfileSettings:
    warmup_s: float = 0.3
    min_samples: int = 30
    min_duration_s: float = 0.5
    max_duration_s: float = 5.0
    ci_rel: float = 0.02
    cv_threshold: float = 0.10
    # Throughput mode times whole back-to-back ``infer`` calls by wall clock instead of the
    # backend's own compute timer (which on a GPU excludes host<->device copies).
    throughput: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise InputError(f"min_samples must be at least 1, got {self.min_samples}")
        if min(self.warmup_s, self.min_duration_s, self.ci_rel, self.cv_threshold) < 0:
            raise InputError("warmup_s, min_duration_s, ci_rel and cv_threshold must not be negative")
        if self.max_duration_s <= 0 or self.max_duration_s < self.min_duration_s:
            raise InputError("max_duration_s must be positive and at least min_duration_s")


@dataclass
class Measurement:
    """The latency of one batch size."""

    batch: int
    input_shapes: dict[str, list[int]]
    warmup_iterations: int
    warmup_s: float
    samples_ms: list[float]
    stats: dict[str, float]
    stable: bool
    stop_reason: str
    throughput_per_s: float


@dataclass
class Profile:
    schema_version: int
    backend: str
    model_path: str
    model_sha256: str
    fingerprint: dict[str, Any]
    runner_settings: dict[str, Any]
    settings: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)

    def measurement(self, batch: int | None = None) -> Measurement:
        if not self.measurements:
            raise InputError(f"profile of {self.model_path} has no measurements")
        if batch is None:
            return self.measurements[0]
        for m in self.measurements:
            if m.batch == batch:
                return m
        have = ", ".join(str(m.batch) for m in self.measurements)
        raise InputError(f"profile of {self.model_path} has no batch {batch}; it has batch {have}")

    def stat(self, name: str = "p50", batch: int | None = None) -> float:
        """A statistic (``p50`` … ``max``, ``throughput_per_s``) of one batch; None = the first."""
        m = self.measurement(batch)
        if name == "throughput_per_s":
            return m.throughput_per_s
        if name not in m.stats:
            raise InputError(f"unknown statistic '{name}'; known: {', '.join(STAT_NAMES)}, throughput_per_s")
        return m.stats[name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Profile:
        if not isinstance(d, dict) or "schema_version" not in d:
            raise InputError("not a spiral profile: no schema_version")
        if d["schema_version"] != SCHEMA_VERSION:
            raise InputError(
                f"profile schema_version {d['schema_version']} is not supported; this spiral reads {SCHEMA_VERSION}"
            )
        try:
            measurements = [Measurement(**m) for m in d["measurements"]]
            return cls(**{**d, "measurements": measurements})
        except (TypeError, KeyError) as exc:
            raise InputError(f"malformed profile: {exc}") from exc

    def save(self, path: Path) -> None:
        write_bytes(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> Profile:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read profile {path}: {exc}") from exc
        try:
            return cls.from_dict(d)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from exc


def measure(runner: Runner, feed: dict[str, np.ndarray], batch: int, settings: ProfileSettings) -> Measurement:
    """Warm up ``runner`` on ``feed`` by time, then sample adaptively (see the module docstring).

    A ``TraceRunner`` (trtexec) times itself: it gets the warm-up, the minimum duration and count,
    and its per-query times are summarized the same way.
    """
    if isinstance(runner, TraceRunner):
        trace = runner.trace(
            {name: list(a.shape) for name, a in feed.items()},
            warmup_s=settings.warmup_s,
            duration_s=settings.min_duration_s,
            iterations=settings.min_samples,
        )
        return _measurement(batch, feed, trace.warmup_iterations, trace.warmup_s, trace.samples_ms,
                            "external_trace", settings)
    warm_start = time.perf_counter()
    runner.infer(feed)  # the first call may compile, allocate or autotune: the timed warm-up follows it
    warmup_iterations = 1
    steady_start = time.perf_counter()
    while time.perf_counter() - steady_start < settings.warmup_s:
        runner.infer(feed)
        warmup_iterations += 1
    warmup_s = time.perf_counter() - warm_start

    samples: list[float] = []
    next_check = settings.min_samples
    start = time.perf_counter()
    while True:
        call_start = time.perf_counter()
        runner.infer(feed)
        call_end = time.perf_counter()
        seconds = call_end - call_start if settings.throughput else runner.last_inference_time()
        samples.append(seconds * 1e3)
        elapsed = call_end - start
        if elapsed >= settings.max_duration_s:
            stop_reason = "max_duration"
            break
        n = len(samples)
        # Checking the CI sorts the samples; every ~5 % more samples is often enough.
        if n >= next_check and elapsed >= settings.min_duration_s:
            # With ci_rel = 0 a CI of exactly zero width (identical timer readings) must not stop it.
            if settings.ci_rel > 0 and median_ci_rel(samples) <= settings.ci_rel:
                stop_reason = "ci_converged"
                break
            next_check = n + max(1, n // 20)

    return _measurement(batch, feed, warmup_iterations, warmup_s, samples, stop_reason, settings)


def _measurement(
    batch: int,
    feed: dict[str, np.ndarray],
    warmup_iterations: int,
    warmup_s: float,
    samples: list[float],
    stop_reason: str,
    settings: ProfileSettings,
) -> Measurement:
    stats = summarize(samples)
    return Measurement(
        batch=batch,
        input_shapes={name: list(a.shape) for name, a in feed.items()},
        warmup_iterations=warmup_iterations,
        warmup_s=warmup_s,
        samples_ms=samples,
        stats=stats,
        stable=stats["cv"] <= settings.cv_threshold,
        stop_reason=stop_reason,
        throughput_per_s=batch * 1e3 / stats["mean"] if stats["mean"] > 0 else float("inf"),
    )


def profile_model(
    model_path: Path,
    backend: str = "ort-cpu",
    *,
    batch_sizes: Sequence[int] = (1,),
    threads: int | None = None,
    precision: str = "fp32",
    settings: ProfileSettings = ProfileSettings(),
    inputs: dict[str, np.ndarray] | None = None,
    cache_dir: Path | None = None,
    backend_options: dict[str, Any] | None = None,
) -> Profile:
    """Load ``model_path`` on ``backend`` and measure its latency at each batch size."""
    model_path = Path(model_path)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    backend_cls = get_backend(backend)
    options = dict(backend_options or {})
    if "batch_sizes" in backend_cls.option_names:  # engines with a dynamic batch build for this range
        options.setdefault("batch_sizes", list(batch_sizes))
    loader = backend_cls(model_path, threads=threads, precision=precision, cache_dir=cache_dir, **options)
    runner = loader.load()
    measurements = []
    with runner:
        metadata = runner.input_metadata()
        for batch in batch_sizes:
            feed = make_inputs(metadata, batch, seed=settings.seed, given=inputs)
            measurements.append(measure(runner, feed, batch, settings))
    return Profile(
        schema_version=SCHEMA_VERSION,
        backend=backend,
        model_path=str(model_path),
        model_sha256=file_sha256(model_path),
        fingerprint=target_fingerprint(backend, threads=runner.settings.get("threads", threads), precision=precision),
        runner_settings=runner.settings,
        settings={**dataclasses.asdict(settings), "inputs": "given" if inputs is not None else "random"},
        measurements=measurements,
    )
