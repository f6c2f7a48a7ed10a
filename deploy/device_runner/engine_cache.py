"""The engine cache under ``--cache``: one folder per ONNX, build flags and runtime version, complete or absent."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .errors import DeviceError, say
from .steps import fill, run_step

BUILD_TIMEOUT_S = 3600
ENGINE_FILE = "engine"


def cache_entry(cache: Path, engine_key: str, runtime_tag: str) -> Path:
    """The cache entry of the manifest's ``engine_key`` built by the runtime ``runtime_tag`` (``trt10.3.0``)."""
    return cache / f"{engine_key}-{runtime_tag}"


def build_engine(manifest: dict, bundle: Path, engine_dir: Path, commands: dict, values: dict,
                 results: Path) -> bool:
    """Build into ``engine_dir`` unless it holds an engine already; True when it was cached."""
    if (engine_dir / ENGINE_FILE).is_file():
        say(f"reusing the engine cached in {engine_dir}")
        shutil.copyfile(str(engine_dir / "build.log"), str(results / "build.log"))
        return True
    staging = bundle / "build"
    staging.mkdir()
    argv = fill(commands["build"], {**values, "engine": str(staging / ENGINE_FILE)})
    say("building the engine: " + " ".join(argv))
    started = time.perf_counter()
    run_step("build-failed", argv, bundle, staging / "build.log", BUILD_TIMEOUT_S)
    if not (staging / ENGINE_FILE).is_file():
        raise DeviceError("build-failed", "the build command succeeded but wrote no engine")
    say(f"built in {time.perf_counter() - started:.1f} s")
    shutil.copyfile(str(staging / "build.log"), str(results / "build.log"))
    try:
        os.rename(str(staging), str(engine_dir))  # atomic: a cache entry is complete or absent
    except OSError:
        if not (engine_dir / ENGINE_FILE).is_file():  # unless a concurrent deploy cached it first
            raise
    return False
