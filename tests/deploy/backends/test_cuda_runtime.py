"""The CUDA runtime calls of the native TensorRT runner, on a real GPU where there is one."""

import importlib.util

import numpy as np
import pytest

from spiralprune.deploy.fingerprint import gpu_info

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed"),
    pytest.mark.skipif(gpu_info() is None, reason="no NVIDIA GPU is visible (NVML found no driver or device)"),
]


def test_round_trip_through_device_memory_and_event_timing():
    from spiralprune.deploy.backends.cuda_runtime import DeviceBuffer, Stream, device_name

    assert "(sm_" in device_name()
    host = np.arange(1 << 20, dtype=np.float32)
    back = np.empty_like(host)
    stream, buffer = Stream(), DeviceBuffer(host.nbytes)
    try:
        stream.record_start()
        stream.upload(buffer, host)
        stream.download(back, buffer)
        stream.record_end()
        elapsed = stream.elapsed_s()
        stream.synchronize()
    finally:
        buffer.free()
        stream.destroy()
    np.testing.assert_array_equal(back, host)
    assert 0 < elapsed < 1.0
