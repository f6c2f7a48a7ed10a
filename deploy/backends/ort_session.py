"""What the ONNX Runtime backends share: session creation, input metadata and the runners."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import InputMetadata, Runner

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def create_session(model_path: Path, options: Any, providers: list[Any]) -> Any:
    """An ``InferenceSession``; a missing, corrupt or unsupported model becomes an InputError."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    if not model_path.is_file():
        raise InputError(f"model file not found: {model_path}")
    load_errors = (
        ort_errors.Fail,
        ort_errors.InvalidArgument,
        ort_errors.InvalidGraph,
        ort_errors.InvalidProtobuf,
        ort_errors.NoSuchFile,
        ort_errors.NotImplemented,
        ort_errors.RuntimeException,
    )
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except load_errors as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"ONNX Runtime cannot load {model_path}: {first_line}") from exc


def session_input_metadata(session: Any) -> InputMetadata:
    meta: InputMetadata = {}
    for node in session.get_inputs():
        if node.type not in _ORT_TYPES:
            raise InputError(f"input '{node.name}' has unsupported type {node.type}")
        meta[node.name] = (list(node.shape), np.dtype(_ORT_TYPES[node.type]))
    return meta


class OrtRunner(Runner):
    """Times ``session.run`` on host arrays with a monotonic clock.

    ``profiling_session(prefix)``, where given, opens a second session of the same model with the
    same options and ONNX Runtime's node profiling on (trace files under ``prefix``), for
    ``spiralprune.deploy.layer_profile``; the timed session itself is never profiled."""

    def __init__(self, session: Any, settings: dict[str, Any],
                 profiling_session: Callable[[str], Any] | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings
        self.profiling_session = profiling_session
        self._output_names = [o.name for o in session.get_outputs()]
        self._last_s = float("nan")

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self.session.run(self._output_names, feed)
        self._last_s = time.perf_counter() - start
        return dict(zip(self._output_names, outputs))

    def last_inference_time(self) -> float:
        return self._last_s

    def input_metadata(self) -> InputMetadata:
        return session_input_metadata(self.session)


class OrtDeviceRunner(Runner):
    """Runs on a GPU execution provider with inputs and outputs bound on the device.

    A feed is copied to the device once and stays bound while the same arrays are passed again;
    the clock covers ``run_with_iobinding`` up to the device being done, not the copies.
    """

    def __init__(self, session: Any, settings: dict[str, Any], device_id: int) -> None:
        super().__init__()
        self.session = session
        self.settings = {**settings, "copies_included": False, "timer": "perf_counter around synchronized run"}
        self._device_id = device_id
        self._output_names = [o.name for o in session.get_outputs()]
        self._binding: Any = None
        self._bound_key: tuple[int, ...] = ()
        self._bound_values: list[Any] = []
        self._last_s = float("nan")

    def _bind(self, feed: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        key = tuple(id(feed[name]) for name in sorted(feed))
        if self._binding is not None and key == self._bound_key:
            return
        binding = self.session.io_binding()
        values = []
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", self._device_id)
            binding.bind_ortvalue_input(name, value)
            values.append(value)
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device_id)
        binding.synchronize_inputs()
        self._binding, self._bound_key, self._bound_values = binding, key, values

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind(feed)
        start = time.perf_counter()
        self.session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        self._last_s = time.perf_counter() - start
        return dict(zip(self._output_names, self._binding.copy_outputs_to_cpu()))

    def last_inference_time(self) -> float:
        return self._last_s

    def input_metadata(self) -> InputMetadata:
        return session_input_metadata(self.session)

    def deactivate(self) -> None:
        self._binding, self._bound_key, self._bound_values = None, (), []
        super().deactivate()


def gpu_provider_availability(provider: str, install_hint: str) -> tuple[bool, str]:
    """Whether ONNX Runtime has ``provider`` and NVML sees a GPU to run it on."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False, f"onnxruntime is not installed ({install_hint})"
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return False, f"onnxruntime {ort.__version__} has no {provider} on this machine ({install_hint})"
    from spiralprune.deploy.fingerprint import gpu_info

    if gpu_info() is None:
        return False, "no NVIDIA GPU is visible (NVML found no driver or device)"
    return True, ""


def require_provider(session: Any, provider: str, model_path: Path) -> None:
    """ONNX Runtime falls back to the CPU silently when a provider fails; a measurement must not."""
    active = session.get_providers()
    if not active or active[0] != provider:
        raise InputError(f"ONNX Runtime could not use {provider} for {model_path} (active providers: {active})")
