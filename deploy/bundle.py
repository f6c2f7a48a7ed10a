"""The bundle ``spiralprune deploy`` ships to a device: everything the device needs, and nothing else.

```
bundle/
  manifest.json               target, model facts, the exact build and profile commands per runtime
                              version, versions, and the sha256 of every other file
  model.onnx
  inputs/<name>.bin           when given: each input's array at the target's batch, raw (trtexec's --loadInputs)
  runner/spiralprune/__init__.py   the ``spiralprune`` package's own (with ``deploy/`` beside it, it adds nothing
                              to its path)
  runner/spiralprune/core/*.py     the floor below ``deploy``, every module of it: errors, atomic, hashing
  runner/spiralprune/deploy/device_runner/*.py
                              the package that runs on the device (python3 + numpy; onnxruntime
                              for CPU targets), every module of it
  runner/spiralprune/deploy/...    the few deploy modules it imports: stats, sampling, verdict,
                              trtexec_parse, layer_profile, tensorrt_layers
```

The device runs it with ``runner/`` on ``PYTHONPATH``: ``python3 -m spiralprune.deploy.device_runner`` (see
``runner_command``). Commands hold placeholders the device fills in: ``{python}`` (the runner's
interpreter), ``{cores}``, ``{engine}``, ``{timing_cache}``, ``{times}``, ``{layers}`` and ``{layer_info}``
(paths in the device's cache and results).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import platform
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import spiralprune
from spiralprune import core
from spiralprune.core.atomic import publish_dir, write_bytes
from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy import device_runner
from spiralprune.deploy.backends.base import InputMetadata
from spiralprune.deploy.backends.engine_cache import build_key
from spiralprune.deploy.backends.inputs import make_inputs
from spiralprune.deploy.backends.onnx_io import read_onnx_io
from spiralprune.deploy.backends.tensorrt_build import builder_flags, onnx_precision_problem
from spiralprune.deploy.backends.trtexec import build_command, input_file, shape_arg, trace_command
from spiralprune.deploy.fingerprint import library_versions
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.target_profiles import Dla, TargetProfile

BUNDLE_VERSION = 1
MODEL_FILE = "model.onnx"
INPUTS_DIR = "inputs"  # the arrays the device feeds, when given (``build_bundle``)
RUNNER_DIR = "runner"  # the bundle's folder that the device puts on PYTHONPATH
RUNNER = "spiralprune.deploy.device_runner"  # the module the device runs: python3 -m spiralprune.deploy.device_runner
_DEPLOY_DIR = Path(__file__).parent
_PACKAGE_DIR = Path(device_runner.__file__).parent
_CORE_DIR = Path(core.__file__).parent
# The runner's package, every module of it, the floor below ``deploy``, every module of it, and what the runner
# imports from ``spiralprune.deploy``, under ``runner/spiralprune/``, with the ``spiralprune`` package's own
# ``__init__``.
RUNNER_FILES = {
    f"{RUNNER_DIR}/spiralprune/__init__.py": Path(spiralprune.__file__),
    **{f"{RUNNER_DIR}/spiralprune/core/{path.name}": path for path in sorted(_CORE_DIR.glob("*.py"))},
    **{f"{RUNNER_DIR}/spiralprune/deploy/device_runner/{path.name}": path for path in sorted(_PACKAGE_DIR.glob("*.py"))},
    **{f"{RUNNER_DIR}/spiralprune/deploy/{name}.py": _DEPLOY_DIR / f"{name}.py"
       for name in ("__init__", "stats", "sampling", "verdict", "trtexec_parse", "layer_profile", "tensorrt_layers")},
}


def runner_command(python: str, manifest_sha256: str, cache: str) -> str:
    """The ``sh`` command that runs the device runner in the bundle folder, with ``runner/`` first on ``PYTHONPATH``."""
    return (f'PYTHONPATH="$PWD/{RUNNER_DIR}${{PYTHONPATH:+:$PYTHONPATH}}" {shlex.quote(python)} -m {RUNNER} run '
            f"--bundle . --manifest-sha256 {shlex.quote(manifest_sha256)} --cache {shlex.quote(cache)}")


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def engine_key(self) -> str:
        return self.manifest["engine_key"]


def dla_args(dla: Dla | None) -> list[str]:
    """trtexec's DLA flags, for the build and for loading the engine."""
    if dla is None:
        return []
    return [f"--useDLACore={dla.core}", *(["--allowGPUFallback"] if dla.gpu_fallback else [])]


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def trtexec_commands(
    target: TargetProfile, model: Path, inputs: InputMetadata, settings: ProfileSettings,
    input_files: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Build and profile command lines for each TensorRT version the target supports.

    A version whose builder cannot give the target's precision with this ONNX (TensorRT 11 has no
    precision flags: the ONNX must already be FP16) carries the reason instead of commands.
    """
    trt = target.trtexec
    assert trt is not None
    batch = target.measure.batch
    commands: dict[str, dict[str, Any]] = {}
    for text in trt.tensorrt:
        version = _version_tuple(text)
        problem = onnx_precision_problem(model, ".".join(map(str, version)), target.precision)
        if problem:
            commands[text] = {"unsupported": problem}
            continue
        flags = builder_flags(".".join(map(str, version)), target.precision, sparse_weights=False)
        build = build_command(
            trt.path, version, Path(MODEL_FILE), Path("{engine}"), flags=flags,
            workspace_bytes=trt.workspace_mib << 20, inputs=inputs, batch_sizes=[batch],
            timing_cache=Path("{timing_cache}"),
        )
        profile = trace_command(
            trt.path, version, Path("{engine}"), shape_arg(inputs, batch),
            warmup_ms=max(1, round(settings.warmup_s * 1e3)), duration_s=max(1, math.ceil(settings.min_duration_s)),
            iterations=settings.min_rounds * settings.block_calls, export_times=Path("{times}"),
            export_layers=(Path("{layers}"), Path("{layer_info}")),
            load_inputs={name: Path(file) for name, file in (input_files or {}).items()},
        )
        commands[text] = {"build": build + dla_args(trt.dla), "profile": profile + dla_args(trt.dla)}
    if all("unsupported" in c for c in commands.values()):
        raise InputError(next(iter(commands.values()))["unsupported"])
    return commands


def ort_commands(target: TargetProfile, settings: ProfileSettings,
                 input_files: dict[str, str] | None = None) -> dict[str, list[str]]:
    threads = str(target.measure.threads) if target.measure.threads else "{cores}"
    return {
        "build": ["{python}", "-m", RUNNER, "ort-build", "--model", MODEL_FILE, "--engine", "{engine}", "--threads", threads],
        "profile": [
            "{python}", "-m", RUNNER, "ort-profile", "--engine", "{engine}", "--model", MODEL_FILE, "--times", "{times}",
            "--threads", threads,
            "--batch", str(target.measure.batch), "--settings", json.dumps(dataclasses.asdict(settings), sort_keys=True),
            *(["--inputs", json.dumps(input_files, sort_keys=True)] if input_files else []),
        ],
    }


def _versions(model_path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    try:
        spiral = importlib.metadata.version("spiralprune")
    except importlib.metadata.PackageNotFoundError:
        spiral = "unknown"
    return {
        "spiral": spiral,
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        **library_versions(),
        "model_ir_version": proto.ir_version,
        "model_opsets": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
        "model_producer": f"{proto.producer_name} {proto.producer_version}".strip(),
    }


def build_bundle(model: Path, target: TargetProfile, out_dir: Path,
                 given: dict[str, np.ndarray] | None = None) -> Bundle:
    """Write the bundle for ``model`` on ``target`` to ``out_dir`` (replacing one that is there). ``given``
    inputs (arrays by input name, cycled to the target's batch) go with it under ``inputs/`` and the device feeds them
    (real images where the graph's work depends on them, NMS say); without, it makes up seeded random ones."""
    model = Path(model)
    if model.suffix != ".onnx":
        raise InputError(f"a bundle ships an ONNX model; {model} is not an .onnx file")
    inputs, _ = read_onnx_io(model)
    batch = target.measure.batch
    for name, (shape, _) in inputs.items():
        if shape and isinstance(shape[0], int) and shape[0] != batch:
            raise InputError(f"input '{name}' has a static batch of {shape[0]}; the target measures batch {batch}")
        if any(not isinstance(d, int) for d in shape[1:]):
            raise InputError(f"input '{name}' has dynamic dimensions besides the batch ({shape}); export a fixed shape")
    settings = target.measure.profile
    feed = make_inputs(inputs, batch, given=given) if given is not None else {}
    input_files = {name: f"{INPUTS_DIR}/{input_file(name)}" for name in feed}
    if target.backend == "trtexec":
        commands: dict[str, Any] = trtexec_commands(target, model, inputs, settings, input_files)
    else:
        commands = ort_commands(target, settings, input_files)
    model_sha = sha256_file(model)
    builds = {k: c.get("build") for k, c in commands.items()} if target.backend == "trtexec" else commands["build"]
    engine_key = build_key({"onnx": model_sha, "backend": target.backend, "build": builds})

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        shutil.copyfile(model, staging / MODEL_FILE)
        for name, source in RUNNER_FILES.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / name)
        for name, file in input_files.items():
            (staging / file).parent.mkdir(exist_ok=True)
            write_bytes(staging / file, feed[name].tobytes())
        files = {name: sha256_file(staging / name) for name in [MODEL_FILE, *input_files.values(), *RUNNER_FILES]}
        manifest = {
            "bundle_version": BUNDLE_VERSION,
            "target": target.model_dump(mode="json", exclude={"ssh"}),
            "backend": target.backend,
            "batch": batch,
            "model": {
                "file": MODEL_FILE,
                "source": str(model.resolve()),
                "sha256": model_sha,
                "bytes": model.stat().st_size,
                "input_shapes": {name: [d if isinstance(d, int) else batch for d in shape]
                                 for name, (shape, _) in inputs.items()},
                "input_dtypes": {name: str(dtype) for name, (_, dtype) in inputs.items()},
                "inputs": "given" if input_files else "random",  # the device's feed: the files, or seeded random
                "input_files": input_files,
            },
            "profile_settings": dataclasses.asdict(settings),
            "engine_key": engine_key,
            "commands": commands,
            "versions": _versions(model),
            "files": files,
        }
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        write_bytes(staging / device_runner.MANIFEST, data)
        publish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out_dir, manifest, hashlib.sha256(data).hexdigest())
