"""Which of the manifest's commands suit the runtime this device has (its trtexec's TensorRT version, or
ONNX Runtime), and the runtime's tag that names its engines in the cache."""

from __future__ import annotations

import os
import sys

from .errors import DeviceError
from .steps import run_quiet


def version_matches(version: tuple[int, ...], supported: str) -> bool:
    parts = tuple(int(p) for p in supported.split("."))
    return version[: len(parts)] == parts


def trtexec_commands(manifest: dict, facts: dict) -> tuple[str, dict]:
    """(runtime tag, {"build", "profile"}) for the TensorRT version that this device's trtexec reports."""
    from spiralprune.core.errors import InputError
    from spiralprune.deploy.trtexec_parse import parse_version

    try:
        import numpy  # to summarize trtexec's samples
    except ImportError:
        raise DeviceError("missing-tool", f"{sys.executable} cannot import numpy: install python3-numpy on the "
                                          "device, or set remote.python in the target") from None
    facts["numpy"] = numpy.__version__
    binary = manifest["target"]["trtexec"]["path"]
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise DeviceError("missing-tool", f"trtexec not found at {binary}: install TensorRT (JetPack) or set "
                                          "trtexec.path in the target")
    code, output = run_quiet([binary, "--help"], timeout=60)
    try:
        version = parse_version(output)
    except InputError as exc:
        raise DeviceError("missing-tool", f"{binary} --help (exit {code}): {exc}") from None
    text = ".".join(str(v) for v in version)
    facts["tensorrt"] = text
    for supported, commands in manifest["commands"].items():
        if version_matches(version, supported):
            if "unsupported" in commands:
                raise DeviceError("unsupported", f"TensorRT {text}: {commands['unsupported']}")
            return f"trt{text}", commands
    raise DeviceError("unsupported", f"the device has TensorRT {text}; the target supports "
                                     f"{', '.join(manifest['commands'])}: add it to trtexec.tensorrt or use a matching JetPack")


def ort_commands(manifest: dict, facts: dict) -> tuple[str, dict]:
    try:
        import numpy
        import onnxruntime
    except ImportError as exc:
        raise DeviceError("missing-tool", f"{sys.executable} cannot import {exc.name}: pip install numpy onnxruntime "
                                          "on the device, or set remote.python in the target") from None
    facts["onnxruntime"] = onnxruntime.__version__
    facts["numpy"] = numpy.__version__
    return f"ort{onnxruntime.__version__}", manifest["commands"]
