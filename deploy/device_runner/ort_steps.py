"""The ONNX Runtime build and profile of CPU targets: ``ort-build`` saves the optimized graph (their
engine), ``ort-profile`` times it in rounds with ``spiralprune.deploy.sampling``, as ``spiralprune.deploy.profiler.measure`` does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .errors import NO_SPACE, DeviceError
from .results import write_json

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _session(model: Path, threads: int, optimize: bool, save_to: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for every load failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if NO_SPACE in str(exc):
            raise DeviceError("disk-full", f"onnxruntime: {NO_SPACE}") from None
        raise DeviceError("build-failed", f"ONNX Runtime cannot load {model.name}: {first}") from None


def ort_build(model: Path, engine: Path, threads: int) -> None:
    """The ``build`` of a CPU target: ONNX Runtime's fully optimized graph, saved for the profile step."""
    _session(model, threads, optimize=True, save_to=engine)
    if not engine.is_file():
        raise DeviceError("build-failed", "ONNX Runtime wrote no optimized model")


def ort_profile(engine: Path, times: Path, threads: int, batch: int, settings: dict) -> None:
    """Time ``session.run`` on seeded random inputs in rounds, as ``spiralprune.deploy.profiler.measure`` does
    (``spiralprune.deploy.sampling``, shipped with the bundle)."""
    import numpy as np

    from spiralprune.deploy.sampling import ProfileSettings, sample_rounds

    session = _session(engine, threads, optimize=False)
    rng = np.random.default_rng(settings["seed"])
    feed = {}
    for node in session.get_inputs():
        if node.type not in _ORT_TYPES:
            raise DeviceError("profile-failed", f"input '{node.name}' has unsupported type {node.type}")
        shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(node.shape)]
        if any(not isinstance(d, int) for d in shape):
            raise DeviceError("profile-failed", f"input '{node.name}' has dynamic dimensions besides the batch: {node.shape}")
        dtype = np.dtype(_ORT_TYPES[node.type])
        if np.issubdtype(dtype, np.floating):
            feed[node.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[node.name] = rng.integers(0, 2, size=shape).astype(dtype)
    outputs = [o.name for o in session.get_outputs()]

    def infer() -> float:
        start = time.perf_counter()
        session.run(outputs, feed)
        return time.perf_counter() - start

    rounds = sample_rounds({"model": infer}, ProfileSettings(**settings))
    series = rounds.series["model"]
    write_json(times, {
        "samples_ms": series.samples_ms,
        "round_sizes": [len(block) for block in series.blocks],
        "cpu_wait": rounds.cpu_wait,
        "warmup_iterations": series.warmup_iterations,
        "warmup_s": series.warmup_s,
        "stop_reason": rounds.stop_reason,
        "runner_settings": {
            "threads": threads, "inter_op_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL (at build)", "providers": session.get_providers(),
            "copies_included": True,
        },
    })
