"""The few CUDA runtime calls the native TensorRT runner needs, through NVIDIA's cuda-python.

Device buffers, one stream and a pair of events; each call's error code is checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:  # cuda-python before 12.6 named the module cuda.cudart
        from cuda import cudart as runtime
    return runtime


def check(result: Any) -> Any:
    """Unwrap a cuda-python ``(error, *values)`` tuple, raising on an error."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, message = rt.cudaGetErrorString(err)
        raise RuntimeError(f"CUDA error {int(err)}: {message.decode() if isinstance(message, bytes) else message}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_name(device: int = 0) -> str:
    """Name and compute capability, e.g. ``NVIDIA H100 80GB HBM3 (sm_90)``."""
    props = check(cudart().cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"{name.rstrip(chr(0))} (sm_{props.major}{props.minor})"


class DeviceBuffer:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(1, nbytes)
        self.ptr = int(check(cudart().cudaMalloc(self.nbytes)))

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr = 0


class Stream:
    """A CUDA stream with two timing events recorded on it."""

    def __init__(self) -> None:
        rt = cudart()
        self.handle = check(rt.cudaStreamCreate())
        self._start = check(rt.cudaEventCreate())
        self._end = check(rt.cudaEventCreate())

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(buffer.ptr, array.ctypes.data, array.nbytes, kind, self.handle))

    def download(self, array: np.ndarray, buffer: DeviceBuffer) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(array.ctypes.data, buffer.ptr, array.nbytes, kind, self.handle))

    def record_start(self) -> None:
        check(cudart().cudaEventRecord(self._start, self.handle))

    def record_end(self) -> None:
        check(cudart().cudaEventRecord(self._end, self.handle))

    def elapsed_s(self) -> float:
        """Seconds between the last start and end events, waiting for the end event."""
        rt = cudart()
        check(rt.cudaEventSynchronize(self._end))
        return float(check(rt.cudaEventElapsedTime(self._start, self._end))) / 1e3

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        rt = cudart()
        check(rt.cudaEventDestroy(self._start))
        check(rt.cudaEventDestroy(self._end))
        check(rt.cudaStreamDestroy(self.handle))
