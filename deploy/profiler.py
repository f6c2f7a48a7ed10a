"""The latency profiler: profiles of one model, or of several measured together in rounds.

Sampling is ``spiralprune.deploy.sampling``'s (time-based warm-up, rounds of timed blocks, adaptive stop);
verdicts are ``spiralprune.deploy.verdict``'s. ``profile_model`` measures one model alone at each batch size
(``spiralprune profile``); ``profile_paired`` loads several models once on one ``Target`` and
alternates them in rounds, so that their comparison rests on per-round ratios; a ``MeasuringSession``
keeps them loaded across measurements, so that only the model that changed is loaded again. A measurement is
``stable`` when its robust coefficient of variation is at most ``cv_threshold``; that is reported,
and fails nothing by itself.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spiralprune.core.atomic import write_bytes
from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy.backends import Runner, get_backend
from spiralprune.deploy.backends.base import TraceRunner
from spiralprune.deploy.backends.engine_cache import Evicted, evict
from spiralprune.deploy.backends.inputs import make_inputs
from spiralprune.deploy.backends.onnx_io import data_dependent_ops
from spiralprune.deploy.fingerprint import target_fingerprint
from spiralprune.deploy.layer_profile import LayerProfile, LayerSampler, OrtLayerSampler, require_layer_backend
from spiralprune.deploy.sampling import ProfileSettings, Rounds, Timed, free_rounds, sample_rounds
from spiralprune.deploy.stats import robust_cv, summarize
from spiralprune.deploy.torch_layers import TorchLayerSampler
from spiralprune.deploy.verdict import Question, Verdict, round_statistic

SCHEMA_VERSION = 1
STAT_NAMES = ("p50", "p90", "p95", "p99", "mean", "stdev", "cv", "robust_cv", "min", "max")


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
    # Samples per round, in order: ``samples_ms`` split by these sizes gives the rounds back.
    round_sizes: list[int] = field(default_factory=list)
    # Per round, the share of the measuring threads' time spent waiting for a CPU (None: unknown);
    # rounds past ``max_cpu_wait`` were left out of the verdicts (``spiralprune.deploy.sampling``).
    cpu_wait: list[float | None] = field(default_factory=list)
    # Where the time goes, per layer (``spiralprune.deploy.layer_profile.LayerProfile.record``: the per-round
    # times, lined up with the rounds of ``round_sizes``, and their explanation), when asked for.
    layers: dict[str, Any] | None = None

    def layer_profile(self) -> LayerProfile | None:
        return LayerProfile.from_dict(self.layers) if self.layers is not None else None

    def blocks(self) -> list[list[float]]:
        """The samples by round (one round of all samples for a profile without rounds)."""
        bounds = np.cumsum([0, *(self.round_sizes or [len(self.samples_ms)])])
        return [self.samples_ms[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def rounds(self, statistic: str = "p50") -> list[float]:
        """The per-round values of ``statistic``."""
        return [round_statistic(block, statistic) for block in self.blocks()]

    def free_samples(self, max_cpu_wait: float) -> list[float]:
        """The samples of the rounds that count under ``max_cpu_wait``, as the verdicts count them
        (``spiralprune.deploy.sampling.free_rounds``): all of them where the waits were not recorded."""
        blocks = self.blocks()
        free = free_rounds(self.cpu_wait or [None] * len(blocks), max_cpu_wait)
        return [sample for block, counts in zip(blocks, free) if counts for sample in block]


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
            raise InputError("not a spiralprune profile: no schema_version")
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


def timed(runner: Runner, feed: dict[str, np.ndarray], throughput: bool) -> Timed:
    """One call of ``runner`` on ``feed``, timed by the backend's compute timer (or the wall clock)."""

    def call() -> float:
        start = time.perf_counter()
        runner.infer(feed)
        return time.perf_counter() - start if throughput else runner.last_inference_time()

    return call


def layer_sampler(runner: Runner, backend: str, model_path: Path, block_calls: int) -> LayerSampler | None:
    """The ``LayerSampler`` of ``backend`` for ``runner``, or an InputError naming the backends that give a
    layer profile: ONNX Runtime's profiling twin, ``torch.profiler`` on a torch target's module, TensorRT's
    ``IProfiler`` on a second context. None for a ``TraceRunner``: trtexec profiles the layers in its own run."""
    require_layer_backend(backend)
    if isinstance(runner, TraceRunner):
        return None
    if backend == "ort-cpu":
        return OrtLayerSampler(runner.profiling_session, model_path, block_calls)
    if backend == "tensorrt":
        from spiralprune.deploy.backends.tensorrt_native import TensorrtLayerSampler

        return TensorrtLayerSampler(runner, block_calls)
    return TorchLayerSampler(runner, block_calls)


def measure(runner: Runner, feed: dict[str, np.ndarray], batch: int, settings: ProfileSettings,
            layers: LayerSampler | None = None, trace_layers: bool = False) -> Measurement:
    """One model alone, sampled in rounds (``spiralprune.deploy.sampling``) until its round median is tight;
    with ``layers``, its profiling twin runs after every round and the measurement carries the layer profile.

    A ``TraceRunner`` (trtexec) times itself: it gets the warm-up, the minimum duration and count,
    and its per-query times, in consecutive rounds of ``block_calls``, are summarized the same way; with
    ``trace_layers`` it profiles the layers in a run of its own after the timed one.
    """
    if isinstance(runner, TraceRunner):
        trace = runner.trace(
            feed,
            warmup_s=settings.warmup_s,
            duration_s=settings.min_duration_s,
            iterations=settings.min_rounds * settings.block_calls,
            layers=trace_layers,
        )
        n, size = len(trace.samples_ms), settings.block_calls
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        measurement = _measurement(batch, feed, trace.warmup_iterations, trace.warmup_s, trace.samples_ms, sizes,
                                   "external_trace", settings)
        if trace.layers is not None:
            measurement.layers = trace.layers.record(measurement.rounds(), settings.confidence)
        return measurement
    if layers is not None:
        layers.start(feed)
    rounds = sample_rounds({"model": timed(runner, feed, settings.throughput)}, settings,
                           between=None if layers is None else lambda blocks: layers.after_round(blocks["model"]))
    measurement = measurement_of(rounds, "model", batch, feed, settings)
    if layers is not None:
        measurement.layers = layers.finish().record(measurement.rounds(), settings.confidence)
    return measurement


def measurement_of(rounds: Rounds, name: str, batch: int, feed: dict[str, np.ndarray],
                   settings: ProfileSettings) -> Measurement:
    series = rounds.series[name]
    measurement = _measurement(batch, feed, series.warmup_iterations, series.warmup_s, series.samples_ms,
                               [len(b) for b in series.blocks], rounds.stop_reason, settings)
    measurement.cpu_wait = list(rounds.cpu_wait)
    return measurement


def _measurement(
    batch: int,
    feed: dict[str, np.ndarray],
    warmup_iterations: int,
    warmup_s: float,
    samples: list[float],
    round_sizes: list[int],
    stop_reason: str,
    settings: ProfileSettings,
) -> Measurement:
    stats = {**summarize(samples), "robust_cv": robust_cv(samples)}
    return Measurement(
        batch=batch,
        input_shapes={name: list(a.shape) for name, a in feed.items()},
        warmup_iterations=warmup_iterations,
        warmup_s=warmup_s,
        samples_ms=samples,
        stats=stats,
        stable=stats["robust_cv"] <= settings.cv_threshold,
        stop_reason=stop_reason,
        throughput_per_s=batch * 1e3 / stats["mean"] if stats["mean"] > 0 else float("inf"),
        round_sizes=round_sizes,
    )


@dataclass(frozen=True)
class ModelFile:
    """What a profile records of the model file it measured, read once when the file is loaded (a
    ``MeasuringSession`` keeps it beside the runner for every later measurement of the same file): its
    content's sha256, and the operators whose work depends on the input values (``data_dependent_ops``)."""

    sha256: str
    data_dependent_ops: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """Where models are measured: a backend with its threads, precision, options and batch size."""

    backend: str = "ort-cpu"
    batch: int = 1
    threads: int | None = None
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)

    def load(self, model_path: Path, cache_dir: Path | None, batch_sizes: Sequence[int] | None = None,
             extra_options: dict[str, Any] | None = None) -> Runner:
        """``extra_options`` are one model's own (a torch target's live ``module=``)."""
        backend_cls = get_backend(self.backend)
        options = {**self.options, **(extra_options or {})}
        if "batch_sizes" in backend_cls.option_names:  # engines with a dynamic batch build for this range
            options.setdefault("batch_sizes", list(batch_sizes or (self.batch,)))
        loader = backend_cls(model_path, threads=self.threads, precision=self.precision, cache_dir=cache_dir, **options)
        return loader.load()

    def profile(self, model_path: Path, model: ModelFile, runner: Runner, settings: ProfileSettings, inputs: str,
                measurements: list[Measurement]) -> Profile:
        return Profile(
            schema_version=SCHEMA_VERSION,
            backend=self.backend,
            model_path=str(model_path),
            model_sha256=model.sha256,
            fingerprint=target_fingerprint(self.backend, threads=runner.settings.get("threads", self.threads),
                                           precision=self.precision),
            runner_settings=runner.settings,
            settings={**dataclasses.asdict(settings), "inputs": inputs,
                      "data_dependent_ops": list(model.data_dependent_ops)},
            measurements=measurements,
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
    layers: bool = False,
) -> Profile:
    """Load ``model_path`` on ``backend`` and measure its latency alone at each batch size;
    ``layers`` adds a per-layer profile to each (``spiralprune.deploy.layer_profile``)."""
    model_path = Path(model_path)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    target = Target(backend, batch_sizes[0], threads, precision, dict(backend_options or {}))
    runner = target.load(model_path, cache_dir, batch_sizes)
    model = ModelFile(sha256_file(model_path), tuple(data_dependent_ops(model_path)))
    measurements = []
    with runner:
        metadata = runner.input_metadata()
        for batch in batch_sizes:
            feed = make_inputs(metadata, batch, seed=settings.seed, given=inputs)
            sampler = layer_sampler(runner, backend, model_path, settings.block_calls) if layers else None
            measurements.append(measure(runner, feed, batch, settings, sampler, trace_layers=layers))
    return target.profile(model_path, model, runner, settings, "given" if inputs is not None else "random", measurements)


@dataclass
class Paired:
    """Models measured together in rounds: a profile of each, and the verdicts on the questions."""

    profiles: dict[str, Profile]
    rounds: Rounds

    @property
    def verdicts(self) -> list[Verdict]:
        return self.rounds.verdicts

    def verdict(self, name: str) -> Verdict:
        return self.rounds.verdict(name)


class MeasuringSession:
    """Models loaded on one ``Target`` for a series of paired measurements (``paired``).

    A model measured again under the same name from the same ONNX file (by content, sha256) keeps the
    runner it was loaded with: a try of a spiral step loads and compiles its teacher and its current model
    once for every plan it measures, and only the candidate changes. Each measurement still activates every
    runner, warms every model up and alternates them in rounds of its own, as one loaded afresh would be
    (``spiralprune.deploy.sampling``); a model's backend options (a torch target's ``module=``) are taken when
    it is loaded. ``cache_dir`` is where the backends keep compiled files by content
    (``spiralprune.deploy.backends.engine_cache``), so a later session reuses them.

    ``compiles`` counts the loads: ``built`` (compiled now), ``from_cache`` (a compiled file reused),
    ``kept`` (still loaded from an earlier measurement of this session); and, once ``evict`` ran, the compiled
    files it removed (``evicted``, ``evicted_mb``). ``engine_keys``: the key of the compiled file each model
    (by name) last ran from, as its backend reported it; it outlives the session, for ``evict``."""

    def __init__(self, target: Target, cache_dir: Path | None = None) -> None:
        self.target = target
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.compiles: dict[str, int | float] = {"built": 0, "from_cache": 0, "kept": 0}
        self.engine_keys: dict[str, str] = {}
        self._loaded: dict[str, tuple[ModelFile, Runner]] = {}

    def __enter__(self) -> MeasuringSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loaded.clear()

    def runner(self, name: str, path: Path, options: dict[str, Any] | None = None) -> tuple[ModelFile, Runner]:
        """Model ``name`` loaded from ``path``, and what its profiles record of the file: the ones loaded
        and read before, when the file is the same."""
        digest = sha256_file(path) if path.is_file() else ""
        held = self._loaded.get(name)
        if held is not None and digest and held[0].sha256 == digest:
            self.compiles["kept"] += 1
            return held
        runner = self.target.load(path, self.cache_dir, extra_options=options)
        self.compiles["from_cache" if runner.settings.get("engine_from_cache") else "built"] += 1
        self.engine_keys.pop(name, None)
        if self.cache_dir is not None and "engine_key" in runner.settings:
            self.engine_keys[name] = runner.settings["engine_key"]
        self._loaded[name] = (ModelFile(digest, tuple(data_dependent_ops(path))), runner)
        return self._loaded[name]

    def evict(self, keep: Collection[str]) -> Evicted:
        """Once the session is closed: remove from ``cache_dir`` every compiled file but those the models named
        ``keep`` last ran from in this session (``engine_keys``; a model it did not load keeps nothing), and count
        them in ``compiles``. What will be measured again (a run's teacher, the model it goes on from) stays;
        TensorRT's timing caches always do (``spiralprune.deploy.backends.engine_cache.evict``)."""
        if self._loaded:
            raise RuntimeError("MeasuringSession.evict called while its models are loaded: close the session first")
        evicted = Evicted() if self.cache_dir is None else evict(
            self.cache_dir, {self.engine_keys[name] for name in keep if name in self.engine_keys})
        self.compiles.update(evicted.record())
        return evicted

    def paired(
        self,
        models: dict[str, Path],
        settings: ProfileSettings,
        questions: Sequence[Question] = (),
        *,
        model_options: dict[str, dict[str, Any]] | None = None,
        layers: Collection[str] = (),
        prior: Rounds | None = None,
        inputs: dict[str, np.ndarray] | None = None,
    ) -> Paired:
        """Measure every model of ``models`` (name -> ONNX path) in rounds on the session's target.

        Every model gets the same inputs, ``inputs`` (arrays by input name, cycled to the batch: real
        samples, for a graph whose work depends on its data) or seeded random ones; the
        rounds go on until every question is decided or the time cap (see ``spiralprune.deploy.sampling``).
        ``model_options`` (name -> backend options) are a model's own: a torch target's ``module=``.
        ``layers`` names the models whose per-layer profile is taken, from calls between the rounds that are
        not judged (a run profiles only its candidate, a comparison both sides; a layer profile is this
        measurement's). ``prior``: an earlier measurement of the same models, continued (``sample_rounds``):
        the profiles and verdicts are of both measurements' rounds.
        """
        target = self.target
        runners: dict[str, Runner] = {}
        files: dict[str, ModelFile] = {}
        feeds: dict[str, dict[str, np.ndarray]] = {}
        samplers: dict[str, LayerSampler] = {}
        try:
            for name, path in models.items():
                files[name], runner = self.runner(name, Path(path), (model_options or {}).get(name))
                runner.activate()
                runners[name] = runner
                if isinstance(runner, TraceRunner):
                    raise InputError(f"backend '{target.backend}' times itself in a separate tool run; "
                                     "it cannot interleave models in rounds: compare it with profiles instead")
                feeds[name] = make_inputs(runner.input_metadata(), target.batch, seed=settings.seed, given=inputs)
                if name in layers:
                    samplers[name] = layer_sampler(runner, target.backend, Path(path), settings.block_calls)
                    samplers[name].start(feeds[name])

            def between(blocks: dict[str, list[float]]) -> None:
                for name, sampler in samplers.items():
                    sampler.after_round(blocks[name])

            rounds = sample_rounds(
                {name: timed(runners[name], feeds[name], settings.throughput) for name in models}, settings,
                questions, between=between if samplers else None, prior=prior,
            )
        finally:
            for runner in runners.values():
                runner.deactivate()
        profiles = {}
        for name, path in models.items():
            measurement = measurement_of(rounds, name, target.batch, feeds[name], settings)
            if name in samplers:  # the layers were profiled between this measurement's rounds
                ours = measurement.rounds()[0 if prior is None else len(prior.series[name].blocks):]
                measurement.layers = samplers[name].finish().record(ours, settings.confidence)
            profiles[name] = target.profile(Path(path), files[name], runners[name], settings,
                                            "given" if inputs is not None else "random", [measurement])
        return Paired(profiles, rounds)


def profile_paired(
    models: dict[str, Path],
    target: Target,
    settings: ProfileSettings,
    questions: Sequence[Question] = (),
    *,
    cache_dir: Path | None = None,
    model_options: dict[str, dict[str, Any]] | None = None,
    layers: Collection[str] = (),
    prior: Rounds | None = None,
    inputs: dict[str, np.ndarray] | None = None,
) -> Paired:
    """One paired measurement in a session of its own (``MeasuringSession.paired``)."""
    with MeasuringSession(target, cache_dir) as session:
        return session.paired(models, settings, questions, model_options=model_options, layers=layers, prior=prior,
                              inputs=inputs)
