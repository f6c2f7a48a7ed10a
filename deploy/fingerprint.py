"""Who measured: the facts about the machine and libraries that a latency number depends on."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spiralprune import __version__

_LIBRARIES = ("onnxruntime", "numpy", "tensorrt", "torch")


def physical_cores() -> int:
    """Physical cores this process may use (affinity and cgroup limits respected), at least 1."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or usable
    return max(1, min(physical, usable))


def _cpuinfo(keys: tuple[str, ...]) -> str | None:
    """The first non-empty value of one of ``keys`` in Linux's ``/proc/cpuinfo`` (None elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keys and value.strip():
                return value.strip()
    return None


def cpu_model() -> str:
    return _cpuinfo(("model name", "Model", "Hardware")) or platform.processor() or platform.machine()


def _on_gpu0(read: Callable[[Any, Any], dict[str, Any]]) -> dict[str, Any] | None:
    """``read(pynvml, handle)`` of GPU 0 within an NVML session, or None where NVML does not work
    (no driver, no library, no GPU)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library, no GPU: all mean "no answer"
        return None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        return read(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
    finally:
        pynvml.nvmlShutdown()


def gpu_info() -> dict[str, Any] | None:
    """Name, driver and memory of GPU 0 via NVML, or None where NVML does not work."""

    def read(nvml: Any, handle: Any) -> dict[str, Any]:
        name, driver = nvml.nvmlDeviceGetName(handle), nvml.nvmlSystemGetDriverVersion()
        return {
            "name": name.decode() if isinstance(name, bytes) else name,
            "driver": driver.decode() if isinstance(driver, bytes) else driver,
            "memory_mib": int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20,
            "count": int(nvml.nvmlDeviceGetCount()),
        }

    return _on_gpu0(read)


def gpu_clocks() -> dict[str, int] | None:
    """GPU 0's SM and memory clocks now (MHz) via NVML, or None where NVML does not work. Recorded
    with a profile, not in the fingerprint: clocks move with load and temperature, and a profile
    taken at other clocks is what they explain."""
    return _on_gpu0(lambda nvml, handle: {"sm": int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
                                          "memory": int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))})


def library_versions() -> dict[str, str]:
    """Versions of the runtime libraries that are importable; torch only if already imported."""
    versions = {}
    for name in _LIBRARIES:
        if name == "torch" and name not in sys.modules:
            continue
        if importlib.util.find_spec(name) is None:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken install is reported as absent
            continue
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``); empty elsewhere."""
    return frozenset((_cpuinfo(("flags", "Features")) or "").split())


def u8s8_saturates() -> bool:
    """Whether ONNX Runtime's U8S8 INT8 kernels on this CPU multiply with VPMADDUBSW, whose 16-bit sums of
    two products saturate: an x86 CPU without VNNI (AVX2, or AVX-512 without it). ONNX Runtime's advice
    there is 7-bit weights (``reduce_range``). Measured on an AMD EPYC without VNNI (2026-12-06): a small
    depthwise network's INT8 logits 0.84 from float (mean |diff|) with 8-bit weights, 0.12 with 7-bit."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags()


def target_fingerprint(backend: str, *, threads: int | None, precision: str) -> dict[str, Any]:
    """CPU, cores, threads, OS, Python, library versions, GPU and precision of a measurement."""
    return {
        "backend": backend,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count() or 1,
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "gpu": gpu_info(),
        "precision": precision,
        "spiral": __version__,  # what measured it (not part of a kernel table's key, which picks its own facts)
    }


