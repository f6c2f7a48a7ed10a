"""The ONNX Runtime build and profile of CPU targets: ``ort-build`` saves the optimized graph (their
engine), ``ort-profile`` times it in rounds with ``spiralprune.deploy.sampling``, as ``spiralprune.deploy.profiler.measure`` does,
and profiles its layers after every round with the host's ``OrtLayerSampler`` (a profiling twin session; the
timed session is never profiled). Naming ONNX Runtime's nodes after the model's modules reads the bundle's
ONNX with the ``onnx`` package; a device without it gives no layer profile and says so."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from spiralprune.core.atomic import write_json

from .errors import NO_SPACE, DeviceError

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _session(model: Path, threads: int, optimize: bool, save_to: Path | None = None,
             profile_prefix: str | None = None) -> Any:
    """A session of ``model``; with ``profile_prefix``, a profiling twin's (the host's ``ort-cpu`` options)."""
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
    if profile_prefix is not None:  # its threads must not spin into the timed block that follows
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def layer_sampler(engine: Path, model: Path, threads: int, block_calls: int) -> tuple[Any, str]:
    """The ``OrtLayerSampler`` of the optimized graph, its nodes named from ``model``; None and why where the
    device has no ``onnx`` to read ``model`` with."""
    if importlib.util.find_spec("onnx") is None:  # ``NodeNames`` reads the model's graph with it
        return None, "not profiled: the device's Python has no onnx package (pip install onnx) to name the layers"
    from spiralprune.deploy.layer_profile import OrtLayerSampler

    sampler = OrtLayerSampler(lambda prefix: _session(engine, threads, False, profile_prefix=prefix), model,
                              block_calls)
    return sampler, "ONNX Runtime's node profiling on a twin session, after every timed round"


def ort_profile(engine: Path, model: Path, times: Path, threads: int, batch: int, settings: dict,
                inputs: dict[str, str] | None = None) -> None:
    """Time ``session.run`` in rounds, as ``spiralprune.deploy.profiler.measure`` does (``spiralprune.deploy.sampling``,
    shipped with the bundle), and profile the layers between the rounds; on the arrays in ``inputs`` (the bundle's
    files by input name, raw at the batch), else on seeded random ones."""
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
        if inputs is not None:
            if node.name not in inputs:
                raise DeviceError("profile-failed", f"the bundle has no input file for input '{node.name}'")
            values = np.fromfile(inputs[node.name], dtype=dtype)
            if values.size != int(np.prod(shape)):
                raise DeviceError("profile-failed", f"{inputs[node.name]} holds {values.size} values; input "
                                  f"'{node.name}' takes {shape}")
            feed[node.name] = values.reshape(shape)
        elif np.issubdtype(dtype, np.floating):
            feed[node.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[node.name] = rng.integers(0, 2, size=shape).astype(dtype)
    outputs = [o.name for o in session.get_outputs()]

    def infer() -> float:
        start = time.perf_counter()
        session.run(outputs, feed)
        return time.perf_counter() - start

    profile_settings = ProfileSettings(**settings)
    sampler, layers_how = layer_sampler(engine, model, threads, profile_settings.block_calls)
    if sampler is not None:
        sampler.start(feed)
    rounds = sample_rounds({"model": infer}, profile_settings,
                           between=None if sampler is None else lambda blocks: sampler.after_round(blocks["model"]))
    series = rounds.series["model"]
    write_json(times, {
        "samples_ms": series.samples_ms,
        "round_sizes": [len(block) for block in series.blocks],
        "cpu_wait": rounds.cpu_wait,
        "warmup_iterations": series.warmup_iterations,
        "warmup_s": series.warmup_s,
        "stop_reason": rounds.stop_reason,
        "layers": None if sampler is None else sampler.finish().to_dict(),
        "runner_settings": {
            "threads": threads, "inter_op_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL (at build)", "providers": session.get_providers(),
            "copies_included": True, "layers": layers_how,
        },
    })
