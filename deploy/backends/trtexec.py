"""``trtexec``: TensorRT's own benchmark tool, run as a subprocess with the flags its version takes.

The engine is built once (``--saveEngine``, cached in ``cache_dir`` by the same key as the native
backend's engines, with a shared ``--timingCacheFile``, and ``--profilingVerbosity=detailed`` so that its
layer information names every layer's ONNX nodes); each measurement then loads it and reads the per-query
GPU compute times (or whole latencies, with ``copies_included``) from ``--exportTimes``. With a per-layer
profile, the same trtexec run profiles the layers after the timed run, in a run of their own
(``--dumpProfile --separateProfileRun --exportProfile``, with ``--exportLayerInfo``): the timed queries
are not profiled (``spiralprune.deploy.tensorrt_layers`` reads both files).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy.backends.base import Backend, InputMetadata, Runner, Trace, TraceRunner
from spiralprune.deploy.backends.engine_cache import EngineSpec
from spiralprune.deploy.backends.onnx_io import read_onnx_io
from spiralprune.deploy.backends.tensorrt_build import builder_flags, onnx_precision_problem
from spiralprune.deploy.fingerprint import gpu_info
from spiralprune.deploy.tensorrt_layers import parse_trtexec_profile
from spiralprune.deploy.trtexec_parse import parse_export_times, parse_summary, parse_version

DEFAULT_WORKSPACE_BYTES = 2 << 30
_FLAG_ARGS = {"FP16": "--fp16", "INT8": "--int8", "SPARSE_WEIGHTS": "--sparsity=enable"}


def shape_arg(inputs: InputMetadata, batch: int) -> str:
    """``name:1x3x224x224,other:...`` with the dynamic batch set to ``batch``."""
    parts = []
    for name, (shape, _) in inputs.items():
        dims = [d if isinstance(d, int) else batch for d in shape]
        parts.append(f"{name}:{'x'.join(str(d) for d in dims)}")
    return ",".join(parts)


def build_command(
    binary: str,
    version: tuple[int, int, int],
    onnx: Path,
    engine: Path,
    *,
    flags: Sequence[str],
    workspace_bytes: int,
    inputs: InputMetadata,
    batch_sizes: Sequence[int],
    timing_cache: Path | None,
) -> list[str]:
    """The build-only command line for this trtexec version."""
    mib = max(1, workspace_bytes >> 20)
    workspace = f"--memPoolSize=workspace:{mib}" if version >= (8, 4, 0) else f"--workspace={mib}"
    cmd = [binary, f"--onnx={onnx}", f"--saveEngine={engine}", workspace, "--skipInference",
           "--profilingVerbosity=detailed"]
    cmd += [_FLAG_ARGS[f] for f in flags]
    if any(not isinstance(shape[0], int) for shape, _ in inputs.values() if shape):
        low, opt, high = min(batch_sizes), batch_sizes[0], max(batch_sizes)
        cmd += [
            f"--minShapes={shape_arg(inputs, low)}",
            f"--optShapes={shape_arg(inputs, opt)}",
            f"--maxShapes={shape_arg(inputs, high)}",
        ]
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


def trace_command(
    binary: str,
    version: tuple[int, int, int],
    engine: Path,
    shapes: str,
    *,
    warmup_ms: int,
    duration_s: int,
    iterations: int,
    export_times: Path,
    export_layers: tuple[Path, Path] | None = None,
    load_inputs: dict[str, Path] | None = None,
) -> list[str]:
    """The measurement command line: load the engine, time, export every query's times; with
    ``export_layers`` (profile file, layer information file), profile the layers in a separate run; with
    ``load_inputs`` (raw little-endian arrays by input name, ``input_file``), feed those instead of the random
    inputs trtexec makes up (a graph whose work depends on its data, NMS say, is timed on real images)."""
    cmd = [
        binary,
        f"--loadEngine={engine}",
        f"--shapes={shapes}",
        f"--warmUp={warmup_ms}",
        f"--duration={duration_s}",
        f"--iterations={iterations}",
        "--useSpinWait",
        f"--exportTimes={export_times}",
    ]
    if version >= (10, 0, 0):  # several percentiles per metric; 8.x takes one
        cmd.append("--percentile=90,95,99")
    if export_layers is not None:
        profile, layer_info = export_layers
        cmd += ["--dumpProfile", "--separateProfileRun", f"--exportProfile={profile}", f"--exportLayerInfo={layer_info}"]
    if load_inputs:
        cmd.append("--loadInputs=" + ",".join(f"'{name}':{path}" for name, path in load_inputs.items()))
    return cmd


def input_file(name: str) -> str:
    """The file an input's array is written to (raw bytes, C order, as trtexec's ``--loadInputs`` reads them)."""
    return f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}.bin"


def run_trtexec(cmd: list[str], timeout_s: float) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"trtexec did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        errors = [line for line in output.splitlines() if "[E]" in line][-3:]
        raise InputError(f"trtexec failed (exit {done.returncode}): {' | '.join(errors) or output[-300:]}")
    return output


class TrtexecBackend(Backend):
    name = "trtexec"
    precisions = ("fp32", "fp16", "int8")
    option_names = ("binary", "workspace_bytes", "batch_sizes", "sparse_weights", "copies_included", "timeout_s")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if shutil.which("trtexec") is None:
            return False, "no trtexec binary on PATH (it ships with TensorRT, in TensorRT-x.y/bin)"
        if gpu_info() is None:
            return False, "no NVIDIA GPU is visible (NVML found no driver or device)"
        return True, ""

    def load(self) -> Runner:
        binary = self.options.get("binary") or shutil.which("trtexec")
        if self.options.get("binary") is None:
            self.require_available()
        self.require_model_file()
        timeout_s = float(self.options.get("timeout_s", 1800))
        version = parse_version(run_trtexec([binary, "--help"], timeout_s=60))
        version_text = ".".join(map(str, version))
        problem = onnx_precision_problem(self.model_path, version_text, self.precision)
        if problem:
            raise InputError(problem)
        gpu = gpu_info()
        spec = EngineSpec(
            onnx_sha256=sha256_file(self.model_path),
            trt_version=version_text,
            gpu=gpu["name"] if gpu else "unknown",
            builder_flags=builder_flags(version_text, self.precision, bool(self.options.get("sparse_weights"))),
            strongly_typed=version[0] >= 11,
            workspace_bytes=int(self.options.get("workspace_bytes", DEFAULT_WORKSPACE_BYTES)),
            batch_sizes=tuple(self.options.get("batch_sizes", (1,))),
        )
        cache_dir = self.cache_dir or Path(tempfile.mkdtemp(prefix="spiral-trtexec-"))
        engine = spec.engine_path(cache_dir)
        inputs, _ = read_onnx_io(self.model_path)
        cached = engine.is_file()
        if not cached:
            cache_dir.mkdir(parents=True, exist_ok=True)
            command = build_command(
                binary, version, self.model_path, engine,
                flags=spec.builder_flags, workspace_bytes=spec.workspace_bytes, inputs=inputs,
                batch_sizes=spec.batch_sizes, timing_cache=spec.timing_cache_path(cache_dir),
            )
            run_trtexec(command, timeout_s)
        settings = {
            "trtexec": binary,
            "tensorrt": version_text,
            "gpu": spec.gpu,
            "precision": self.precision,
            "builder_flags": list(spec.builder_flags),
            "engine": str(engine),
            "engine_key": spec.key(),
            "engine_from_cache": cached,
            "copies_included": bool(self.options.get("copies_included", False)),
            "timer": "trtexec --exportTimes (" + ("latencyMs" if self.options.get("copies_included") else "computeMs") + ")",
        }
        return TrtexecRunner(binary, version, engine, inputs, settings, timeout_s)


class TrtexecRunner(TraceRunner):
    def __init__(
        self, binary: str, version: tuple[int, int, int], engine: Path, inputs: InputMetadata,
        settings: dict[str, Any], timeout_s: float,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._binary, self._version, self._engine, self._inputs = binary, version, engine, inputs
        self._timeout_s = timeout_s
        self._last_s = float("nan")

    def input_metadata(self) -> InputMetadata:
        return self._inputs

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise InputError("the trtexec backend measures inside trtexec and returns no outputs; use 'tensorrt' to infer")

    def last_inference_time(self) -> float:
        return self._last_s

    def trace(self, feed: dict[str, np.ndarray], *, warmup_s: float, duration_s: float, iterations: int,
              layers: bool = False) -> Trace:
        shape_text = ",".join(f"{name}:{'x'.join(map(str, array.shape))}" for name, array in feed.items())
        with tempfile.TemporaryDirectory(prefix="spiral-trtexec-") as tmp:
            times = Path(tmp) / "times.json"
            exports = (Path(tmp) / "profile.json", Path(tmp) / "layers.json") if layers else None
            files = {name: Path(tmp) / input_file(name) for name in feed}
            for name, path in files.items():
                np.ascontiguousarray(feed[name]).tofile(path)
            command = trace_command(
                self._binary, self._version, self._engine, shape_text,
                warmup_ms=max(1, round(warmup_s * 1e3)), duration_s=max(1, math.ceil(duration_s)),
                iterations=iterations, export_times=times, export_layers=exports, load_inputs=files,
            )
            summary = parse_summary(run_trtexec(command, self._timeout_s))
            records = parse_export_times(times.read_text(), skip=summary.warmup_queries or 0)
            profile = None if exports is None else parse_trtexec_profile(*(path.read_text() for path in exports))
        key = "latencyMs" if self.settings["copies_included"] else "computeMs"
        samples = [float(r[key]) for r in records]
        self._last_s = samples[-1] / 1e3
        return Trace(samples, summary.warmup_queries or 0, (summary.warmup_ms or 0.0) / 1e3, profile)
