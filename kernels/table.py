"""Operator latency tables: single-operator graphs timed on a backend, cached on disk per target.

One JSON file per target holds every operator timed there, keyed by the operator's signature
(``Conv.key()`` …). The file name is a digest of the target's stable facts (backend, CPU model,
threads, runtime library versions, precision, GPU), so a table is reused across runs and models
on the same target and never mixed with another's. Writes merge with what is on disk and rename
into place, so concurrent runs lose nothing and a killed one leaves no corrupt file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import onnx

from spiralprune.core.atomic import write_bytes
from spiralprune.core.errors import InputError
from spiralprune.core.hashing import json_digest
from spiralprune.deploy.backends import get_backend
from spiralprune.deploy.backends.inputs import example_feed
from spiralprune.deploy.fingerprint import physical_cores, target_fingerprint
from spiralprune.deploy.profiler import Measurement, ProfileSettings, measure
from spiralprune.deploy.stats import summarize
from spiralprune.kernels.ops import OpSignature, empty_graph

# 2: ort-cpu's pool threads stop spinning when a run returns; operators timed before ran in the other
# regime, and one table must not mix the two (its call overhead is subtracted from every operator).
TABLE_VERSION = 2
# Operators are timed briefly (a table has hundreds of entries) and by their fastest sample: a run
# of a few milliseconds is either clear of other processes or not, and the minimum is what stays
# put when it is not. The predictor's calibration maps these sums to the model's own statistic.
OP_SETTINGS = ProfileSettings(
    warmup_s=0.01, block_s=0.0, block_calls=2, min_rounds=10, min_duration_s=0.01, max_duration_s=0.2,
    ci_rel=float("inf"),
)
OP_STATISTIC = "min"
# Timings of an operator whose every round waited for a CPU past ``max_cpu_wait`` (the rounds the
# judge sets aside) before one is kept: a busy machine inflates even the minimum of an operator that
# needs every core, and a table keeps what it saved for every later run on that target (the plain
# net's table timed at load 4 on 2 cores predicted its smallest plans slower than larger ones).
OP_TRIES = 3
# The per-call cost of an empty graph, subtracted from every operator (a whole model pays it once).
CALL_OVERHEAD_KEY = "call-overhead"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPIRAL_KERNELS_CACHE", Path.home() / ".cache" / "spiral" / "kernels"))


def stable_fingerprint(
    backend: str, *, threads: int | None, precision: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parts of ``target_fingerprint`` a kernel's latency depends on (no OS release, no Python),
    and the backend's options (a torch target's device and compile mode) when it has any."""
    full = target_fingerprint(backend, threads=threads or physical_cores(), precision=precision)
    libraries = dict(full["libraries"])
    if not backend.startswith("torch"):
        libraries.pop("torch", None)  # recorded only when imported: not a fact about an ONNX target
    gpu = full["gpu"]
    return {
        "table_version": TABLE_VERSION,
        "backend": backend,
        "cpu": full["cpu"],
        "machine": full["machine"],
        "threads": full["threads"],
        "precision": precision,
        "libraries": libraries,
        "gpu": None if gpu is None else {"name": gpu["name"], "driver": gpu["driver"]},
        **({"options": dict(sorted(options.items()))} if options else {}),
    }


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    return json_digest(fingerprint, 16)


class LatencyTable:
    """Latency in ms of single operators on one target, timed on first use and cached on disk.

    ``hits`` and ``misses`` count lookups served from the cache and operators timed by this object.
    An operator is timed on the rounds its threads ran on a free CPU (``free_statistic``); one that
    found no free round in ``OP_TRIES`` timings is used by this object and not saved.
    """

    def __init__(
        self,
        backend: str = "ort-cpu",
        *,
        threads: int | None = None,
        precision: str = "fp32",
        cache_dir: Path | None = None,
        settings: ProfileSettings = OP_SETTINGS,
        options: dict[str, Any] | None = None,
    ) -> None:
        available, reason = get_backend(backend).availability()
        if not available:
            raise InputError(f"backend '{backend}' is unavailable: {reason}")
        self.backend = backend
        self.threads = threads
        self.precision = precision
        self.settings = settings
        self.options = dict(options or {})  # the backend's options, e.g. a torch target's device
        # A torch target runs a live module: each operator is timed as its torch module.
        self.live_module = "module" in get_backend(backend).option_names
        self.fingerprint = stable_fingerprint(backend, threads=threads, precision=precision, options=self.options)
        self.path = Path(cache_dir or default_cache_dir()) / f"{backend}-{fingerprint_digest(self.fingerprint)}.json"
        self.entries: dict[str, float] = self._read()
        self.busy: set[str] = set()  # entries timed only on a busy CPU: used, never saved
        self.hits = 0
        self.misses = 0

    def _read(self) -> dict[str, float]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"latency table {self.path} is unreadable ({exc}); delete it to rebuild") from exc
        if not isinstance(data, dict) or data.get("fingerprint") != self.fingerprint:
            raise InputError(f"latency table {self.path} belongs to another target; delete it to rebuild")
        return {str(k): float(v) for k, v in data["entries"].items()}

    def _save(self) -> None:
        """Merge with what is on disk (what a concurrent run added meanwhile) and write, leaving out
        the entries timed only on a busy CPU (``busy``): they serve this object, and a later run times
        them again; a value on disk replaces them here."""
        disk = self._read()
        kept = {k: v for k, v in self.entries.items() if k not in self.busy}
        self.busy -= set(disk)
        self.entries = {**self.entries, **disk, **kept}
        body = {"fingerprint": self.fingerprint, "entries": dict(sorted({**disk, **kept}.items()))}
        write_bytes(self.path, (json.dumps(body, indent=1) + "\n").encode())

    @property
    def call_overhead_ms(self) -> float:
        """What running an empty graph costs on this target; timed once per table."""
        if CALL_OVERHEAD_KEY not in self.entries:
            self.entries[CALL_OVERHEAD_KEY], free = self._time(None)
            if not free:
                self.busy.add(CALL_OVERHEAD_KEY)
            self._save()
        return self.entries[CALL_OVERHEAD_KEY]

    def latency(self, op: OpSignature) -> float:
        """Milliseconds of ``op`` alone, minus the empty-graph call overhead, at least 0."""
        return self.latencies([op])[0]

    def latencies(self, ops: Iterable[OpSignature]) -> list[float]:
        """Like ``latency`` for many operators; the missing ones are timed and saved in one write."""
        ops = list(ops)
        overhead = self.call_overhead_ms
        missing = {op.key(): op for op in ops if op.key() not in self.entries}
        self.hits += len(ops) - len(missing)
        self.misses += len(missing)
        timed = {key: self._time(op) for key, op in missing.items()}
        self.entries.update((key, ms) for key, (ms, _) in timed.items())
        self.busy |= {key for key, (_, free) in timed.items() if not free}
        if missing:
            self._save()
        return [max(0.0, self.entries[op.key()] - overhead) for op in ops]

    def staircase(self, op: OpSignature, counts: Sequence[int], *, side: str = "out") -> list[tuple[int, float]]:
        """(channel count, ms) of ``op`` with its output (``side="out"``) or input channels set to each count."""
        if side not in ("in", "out"):
            raise InputError(f"side must be 'in' or 'out', got '{side}'")
        variants = [op.resized(**{f"{side}_channels": c}) for c in counts]
        return list(zip(counts, self.latencies(variants)))

    def _time(self, op: OpSignature | None) -> tuple[float, bool]:
        """``op`` (``None``: the empty graph) timed alone: its ONNX graph, or on a torch target its
        torch module (the graph names its inputs), up to ``OP_TRIES`` times until a timing has rounds
        on a free CPU (``free_statistic``); (ms, whether they were free: only then is it saved)."""
        options = dict(self.options)
        if self.live_module:
            from spiralprune.kernels.torch_ops import torch_module

            options["module"] = torch_module(op)
        with tempfile.TemporaryDirectory(prefix="spiral-op-") as tmp:
            path = Path(tmp) / "op.onnx"
            onnx.save(empty_graph() if op is None else op.graph(), str(path))
            runner = get_backend(self.backend)(path, threads=self.threads, precision=self.precision, **options).load()
            with runner:
                feed = example_feed(runner.input_metadata())
                for _ in range(OP_TRIES):
                    measurement = measure(runner, feed, 1, self.settings)
                    ms = free_statistic(measurement, self.settings.max_cpu_wait)
                    if ms is not None:
                        return ms, True
                return measurement.stats[OP_STATISTIC], False


def free_statistic(measurement: Measurement, max_cpu_wait: float) -> float | None:
    """``OP_STATISTIC`` of the samples of the rounds that ran on a free CPU, as the judge counts them
    (``Measurement.free_samples``); None when no round was free."""
    free = measurement.free_samples(max_cpu_wait)
    return summarize(free)[OP_STATISTIC] if free else None
