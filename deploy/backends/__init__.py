"""Backends by name. Each lives in its own module and imports its runtime library lazily."""

from __future__ import annotations

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import Backend, InputMetadata, Runner, Trace, TraceRunner
from spiralprune.deploy.backends.ort_cpu import OrtCpuBackend
from spiralprune.deploy.backends.ort_cuda import OrtCudaBackend
from spiralprune.deploy.backends.ort_trt import OrtTrtBackend
from spiralprune.deploy.backends.tensorrt_native import TensorrtBackend
from spiralprune.deploy.backends.torch_compile import TorchCompileBackend
from spiralprune.deploy.backends.torch_eager import TorchEagerBackend
from spiralprune.deploy.backends.trtexec import TrtexecBackend

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        OrtCpuBackend,
        OrtCudaBackend,
        OrtTrtBackend,
        TensorrtBackend,
        TrtexecBackend,
        TorchEagerBackend,
        TorchCompileBackend,
    )
}

__all__ = [
    "BACKENDS", "Backend", "InputMetadata", "Runner", "Trace", "TraceRunner", "get_backend", "list_backends",
]


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise InputError(f"unknown backend '{name}'; known: {', '.join(BACKENDS)}") from None


def list_backends() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for every registered backend."""
    return [(name, *cls.availability()) for name, cls in BACKENDS.items()]
