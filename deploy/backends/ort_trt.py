"""``ort-trt``: ONNX Runtime's TensorRT execution provider, with its engine and timing caches.

ONNX Runtime names a cached engine after the model's graph and leaves it to the user to clear the cache when
the model changes (its TensorRT EP documentation), so under ``cache_dir`` each model's engines get a folder
of their own, keyed by the ONNX file's sha256 and the provider's options (``build_key``): two candidates
of one structure written to one path never share an engine. The timing cache (per layer, shared by every
build on a GPU) stays in ``cache_dir`` itself.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
from collections.abc import Sequence
from typing import Any

from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy.backends.base import Backend, InputMetadata, Runner
from spiralprune.deploy.backends.engine_cache import build_key
from spiralprune.deploy.backends.onnx_io import read_onnx_io
from spiralprune.deploy.backends.ort_session import OrtDeviceRunner, create_session, gpu_provider_availability, require_provider
from spiralprune.deploy.fingerprint import gpu_info

PROVIDER = "TensorrtExecutionProvider"
DEFAULT_WORKSPACE_BYTES = 2 << 30


def shape_profiles(inputs: InputMetadata, batch_sizes: Sequence[int]) -> dict[str, str] | None:
    """The EP's min/opt/max shape strings for a dynamic batch: the span of ``batch_sizes``, tuned for
    the first of them (the one a profile reports by default). None when every input is static."""
    if not any(shape and not isinstance(shape[0], int) for shape, _ in inputs.values()):
        return None
    profiles = {}
    for key, batch in (("min", min(batch_sizes)), ("opt", batch_sizes[0]), ("max", max(batch_sizes))):
        parts = []
        for name, (shape, _) in inputs.items():
            if any(not isinstance(d, int) for d in shape[1:]):
                raise InputError(f"input '{name}' has dynamic dimensions besides the batch: {shape}")
            dims = [batch if not isinstance(shape[0], int) else shape[0], *shape[1:]]
            parts.append(f"{name}:{'x'.join(str(d) for d in dims)}")
        profiles[f"trt_profile_{key}_shapes"] = ",".join(parts)
    return profiles


class OrtTrtBackend(Backend):
    name = "ort-trt"
    precisions = ("fp32", "fp16", "int8")
    option_names = ("device_id", "workspace_bytes", "batch_sizes", "sparse_weights")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, reason = gpu_provider_availability(PROVIDER, "pip install 'spiralprune[gpu]'")
        if ok and importlib.util.find_spec("tensorrt_libs") is None and ctypes.util.find_library("nvinfer") is None:
            return False, "the TensorRT libraries (libnvinfer) are not installed (pip install 'spiralprune[gpu]')"
        return ok, reason

    def load(self) -> Runner:
        self.require_available()
        import onnxruntime as ort

        device_id = int(self.options.get("device_id", 0))
        batch_sizes = list(self.options.get("batch_sizes", [1]))
        trt_options: dict[str, Any] = {
            "device_id": device_id,
            "trt_max_workspace_size": int(self.options.get("workspace_bytes", DEFAULT_WORKSPACE_BYTES)),
            "trt_fp16_enable": self.precision == "fp16",
            "trt_int8_enable": self.precision == "int8",  # explicit (QDQ) quantization in the ONNX
            "trt_sparsity_enable": bool(self.options.get("sparse_weights", False)),
        }
        trt_options.update(shape_profiles(read_onnx_io(self.model_path)[0], batch_sizes) or {})
        from_cache, key = False, None
        if self.cache_dir is not None:
            gpu = gpu_info() or {}
            key = build_key({
                "backend": self.name, "onnx_sha256": sha256_file(self.model_path), "onnxruntime": ort.__version__,
                "gpu": gpu.get("name"), "driver": gpu.get("driver"), **trt_options,
            })
            engines = self.cache_dir / key
            from_cache = any(engines.glob("*.engine"))
            engines.mkdir(parents=True, exist_ok=True)
            trt_options.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(engines),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(self.cache_dir),
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [(PROVIDER, trt_options), ("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        session = create_session(self.model_path, options, providers)
        require_provider(session, PROVIDER, self.model_path)
        settings = {
            "providers": session.get_providers(),
            "provider_options": trt_options,
            "precision": self.precision,
            "onnxruntime": ort.__version__,
            "engine_from_cache": from_cache,
            **({"engine_key": key} if key is not None else {}),
        }
        return OrtDeviceRunner(session, settings, device_id)
