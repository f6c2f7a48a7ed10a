"""``tensorrt``: an engine built with the native TensorRT Python API, timed with CUDA events.

Engines are cached in ``cache_dir`` by (ONNX sha256, TensorRT version, GPU, builder flags, batch
range, workspace), with a timing cache shared by every build on that TensorRT and GPU.

Its per-layer profile (``TensorrtLayerSampler``) comes from a second execution context of the same engine
with a ``tensorrt.IProfiler`` attached, run a few calls after each judged round on the judged context's
buffers; the judged context has no profiler, so its calls and the verdicts are the same with or without it.
A context with a profiler reports every layer's time once per call: ``execute_async_v3`` then runs
synchronously (``IExecutionContext.enqueue_emits_profile``, True by default).
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy.backends.base import Backend, InputMetadata, Runner
from spiralprune.deploy.backends.cuda_runtime import DeviceBuffer, Stream, device_name
from spiralprune.deploy.backends.engine_cache import EngineSpec
from spiralprune.deploy.backends.tensorrt_build import build_engine, builder_flags, onnx_precision_problem, trt_major
from spiralprune.deploy.fingerprint import gpu_info
from spiralprune.deploy.layer_profile import LayerProfile, LayerSampler, per_round
from spiralprune.deploy.tensorrt_layers import parse_layer_info, tensorrt_profile

DEFAULT_WORKSPACE_BYTES = 2 << 30


class TensorrtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    option_names = ("workspace_bytes", "batch_sizes", "sparse_weights", "copies_included")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorrt") is None:
            return False, "the tensorrt Python package is not installed (pip install 'spiralprune[gpu]')"
        if importlib.util.find_spec("cuda") is None:
            return False, "cuda-python is not installed (pip install 'spiralprune[gpu]')"
        if gpu_info() is None:
            return False, "no NVIDIA GPU is visible (NVML found no driver or device)"
        return True, ""

    def spec(self, trt_version: str, gpu: str) -> EngineSpec:
        return EngineSpec(
            onnx_sha256=sha256_file(self.model_path),
            trt_version=trt_version,
            gpu=gpu,
            builder_flags=builder_flags(trt_version, self.precision, bool(self.options.get("sparse_weights"))),
            strongly_typed=trt_major(trt_version) >= 11,
            workspace_bytes=int(self.options.get("workspace_bytes", DEFAULT_WORKSPACE_BYTES)),
            batch_sizes=tuple(self.options.get("batch_sizes", (1,))),
        )

    def load(self) -> Runner:
        self.require_available()
        self.require_model_file()
        import tensorrt as trt

        problem = onnx_precision_problem(self.model_path, trt.__version__, self.precision)
        if problem:
            raise InputError(problem)
        spec = self.spec(trt.__version__, device_name())
        cached = self.cache_dir is not None and spec.engine_path(self.cache_dir).is_file()
        if cached:
            engine_bytes = spec.engine_path(self.cache_dir).read_bytes()
        else:
            timing_cache = spec.timing_cache_path(self.cache_dir) if self.cache_dir is not None else None
            engine_bytes = build_engine(trt, self.model_path, spec, timing_cache)
            if self.cache_dir is not None:
                spec.save(self.cache_dir, engine_bytes)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise InputError(f"TensorRT could not deserialize the engine for {self.model_path}")
        settings = {
            "tensorrt": trt.__version__,
            "gpu": spec.gpu,
            "precision": self.precision,
            "builder_flags": list(spec.builder_flags),
            "strongly_typed": spec.strongly_typed,
            "workspace_bytes": spec.workspace_bytes,
            "batch_sizes": list(spec.batch_sizes),
            "engine_key": spec.key(),
            "engine_from_cache": cached,
            "copies_included": bool(self.options.get("copies_included", False)),
            "timer": "cuda-events",
        }
        return TensorrtRunner(trt, engine, settings)


class TensorrtRunner(Runner):
    """Binds device buffers once per input shape and times ``execute_async_v3`` with CUDA events
    (and the host<->device copies too when ``copies_included``)."""

    def __init__(self, trt: Any, engine: Any, settings: dict[str, Any]) -> None:
        super().__init__()
        self.settings = settings
        self._trt = trt
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._context: Any = None
        self._stream: Stream | None = None
        self._buffers: dict[str, DeviceBuffer] = {}
        self._host_outputs: dict[str, np.ndarray] = {}
        self._bound_key: tuple[Any, ...] = ()
        self._last_s = float("nan")

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def input_metadata(self) -> InputMetadata:
        return {
            name: ([d if d >= 0 else None for d in self._engine.get_tensor_shape(name)], self._dtype(name))
            for name in self._inputs
        }

    def activate(self) -> None:
        self._context = self._engine.create_execution_context()
        self._stream = Stream()
        super().activate()

    def deactivate(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        if self._stream is not None:
            self._stream.destroy()
        self._buffers, self._host_outputs, self._bound_key = {}, {}, ()
        self._context, self._stream = None, None
        super().deactivate()

    def _bind(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set shapes and addresses and upload the inputs, unless this very feed is bound already."""
        arrays = {name: np.ascontiguousarray(feed[name], dtype=self._dtype(name)) for name in self._inputs}
        key = tuple((id(feed[name]), feed[name].shape) for name in self._inputs)
        if key == self._bound_key:
            return arrays
        for name, array in arrays.items():
            self._context.set_input_shape(name, array.shape)
            self._set_buffer(name, array.nbytes)
            self._stream.upload(self._buffers[name], array)
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            self._host_outputs[name] = np.empty(shape, dtype=self._dtype(name))
            self._set_buffer(name, self._host_outputs[name].nbytes)
        self._stream.synchronize()
        self._bound_key = key
        return arrays

    def _set_buffer(self, name: str, nbytes: int) -> None:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = self._buffers[name] = DeviceBuffer(nbytes)
        self._context.set_tensor_address(name, buffer.ptr)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._bind(feed)
        stream = self._stream
        copies = self.settings["copies_included"]
        stream.record_start()
        if copies:
            for name, array in arrays.items():
                stream.upload(self._buffers[name], array)
        if not self._context.execute_async_v3(stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        if copies:
            for name in self._outputs:
                stream.download(self._host_outputs[name], self._buffers[name])
        stream.record_end()
        self._last_s = stream.elapsed_s()
        if not copies:
            for name in self._outputs:
                stream.download(self._host_outputs[name], self._buffers[name])
        stream.synchronize()
        return {name: array.copy() for name, array in self._host_outputs.items()}

    def last_inference_time(self) -> float:
        return self._last_s

    def profiling_context(self, feed: dict[str, np.ndarray], profiler: Any) -> Any:
        """A second execution context of the engine on this runner's buffers (``feed`` bound), ``profiler`` attached."""
        self._bind(feed)
        context = self._engine.create_execution_context()
        context.profiler = profiler
        context.enqueue_emits_profile = True  # each execute_async_v3 reports its layers (TensorRT's default)
        # An engine with dynamic shapes lets one context at a time use an optimization profile on some TensorRT
        # versions (NVIDIA/TensorRT issue 1590): the second context's shapes are then refused.
        if not all(context.set_input_shape(name, feed[name].shape) for name in self._inputs):
            raise InputError(f"TensorRT {self._trt.__version__} gives a second execution context of this engine no "
                             "input shapes (an engine with a dynamic batch shares its optimization profile with one "
                             "context only on some versions): build it with a static batch to profile its layers")
        for name, buffer in self._buffers.items():
            context.set_tensor_address(name, buffer.ptr)
        return context

    def profiled_call(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed on the profiling context")
        self._stream.synchronize()

    def engine_layers(self) -> str:
        """The engine's layer information as JSON (``IEngineInspector``, the format of ``--exportLayerInfo``)."""
        return self._engine.create_engine_inspector().get_engine_information(self._trt.LayerInformationFormat.JSON)


class TensorrtLayerSampler(LayerSampler):
    """``tensorrt.IProfiler`` on a second context of a ``TensorrtRunner``'s engine (see the module docstring)."""

    def __init__(self, runner: TensorrtRunner, block_calls: int) -> None:
        super().__init__(block_calls)
        trt = runner._trt
        sampler = self

        class Profiler(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                sampler._call[layer_name] = sampler._call.get(layer_name, 0.0) + ms

        self._runner = runner
        self._profiler = Profiler()
        self._call: dict[str, float] = {}
        self._call_layers: list[dict[str, float]] = []
        self._context: Any = None

    def start(self, feed: dict[str, np.ndarray], warmup_calls: int = 3) -> None:
        self._context = self._runner.profiling_context(feed, self._profiler)
        super().start(feed, warmup_calls)

    def _run(self, count: int, profiled: bool) -> None:
        for _ in range(count):
            self._call = {}
            start = time.perf_counter()
            self._runner.profiled_call(self._context)  # it synchronizes its stream
            if profiled:
                self._call_ms.append((time.perf_counter() - start) * 1e3)
                self._call_layers.append(self._call)

    def finish(self) -> LayerProfile:
        runs = [r for r in self._run_rounds if r >= 0]
        names = list(dict.fromkeys(name for call in self._call_layers for name in call))
        rounds = {name: per_round([(r, call.get(name, 0.0)) for r, call in zip(runs, self._call_layers)], self._rounds)
                  for name in names}
        self._context = None
        return tensorrt_profile("tensorrt IProfiler", [runs.count(i) for i in range(self._rounds)], rounds,
                                parse_layer_info(self._runner.engine_layers()),
                                per_round(list(zip(runs, self._call_ms)), self._rounds))
