"""The half of ``spiralprune deploy`` that runs on the device, shipped inside the bundle.

The bundle carries this package as ``runner/spiralprune/deploy/device_runner/`` beside the few ``deploy``
modules it imports and ``spiralprune.core`` whole; in the bundle folder the device runs

    PYTHONPATH=runner python3 -m spiralprune.deploy.device_runner run --bundle . --manifest-sha256 HEX --cache DIR

(``spiralprune.deploy.bundle.runner_command``): verify every file of the bundle against its manifest (whose own hash
comes from the command line), record the device's facts (L4T/JetPack, power mode, clocks, cores,
TensorRT), refuse a power mode other than the target's, build the engine with the manifest's exact
command (or reuse the one cached under ``--cache`` for the same ONNX, flags and runtime version),
profile it (and its layers) with the manifest's exact command while ``tegrastats`` runs where it exists, and write
``results/``: ``profile.json`` (the schema of ``spiralprune.deploy.profiler.Profile``), ``device.json`` and
``run.json``. The same package is the build and profile commands of CPU targets (``ort-build``,
``ort-profile``).

It needs Python 3.8 and the standard library, numpy to summarize, and onnxruntime for CPU targets (onnx
too for their per-layer profile). It imports only the modules shipped with it (``core/``,
``deploy/stats.py``, ``deploy/sampling.py`` and ``deploy/verdict.py``, whose rounds every spiral measurement
uses, ``deploy/trtexec_parse.py``, and ``deploy/layer_profile.py`` with ``deploy/tensorrt_layers.py`` for the
layers' profile). A failure is one line ``SPIRAL-DEVICE-ERROR <kind>: <message>`` on
stderr and exit status 3; ``spiralprune deploy`` turns it into its own one-line error.

One concern per module: ``errors`` (the error line), ``manifest`` (checksums), ``facts`` (the device's
facts), ``tegrastats``, ``power`` (the power state the target expects), ``steps`` (running commands),
``runtimes`` (which commands suit this device's runtime), ``engine_cache``, ``results`` (the
measurement and ``profile.json``), ``ort_steps`` (the ONNX Runtime build and profile), ``bundle_run``
(one whole run) and ``cli``.
"""

from __future__ import annotations

from .bundle_run import run
from .cli import main
from .engine_cache import BUILD_TIMEOUT_S, ENGINE_FILE, build_engine, cache_entry
from .errors import ERROR_MARK, EXIT_ERROR, DeviceError, say
from .facts import (count_physical_cores, cpu_model, device_facts, parse_cpuinfo_cores, parse_nv_tegra_release,
                    parse_nvpmodel, power_mode, read_clocks, sysfs_cores)
from .manifest import MANIFEST, verify_bundle
from .ort_steps import ort_build, ort_profile
from .power import check_power
from .results import SCHEMA_VERSION, consecutive_rounds, measurement, profile_json, read_trace
from .runtimes import ort_commands, trtexec_commands, version_matches
from .steps import fill, run_quiet, run_step
from .tegrastats import Tegrastats, parse_tegrastats

__all__ = [
    "BUILD_TIMEOUT_S", "ENGINE_FILE", "ERROR_MARK", "EXIT_ERROR", "MANIFEST", "SCHEMA_VERSION", "DeviceError",
    "Tegrastats", "build_engine", "cache_entry", "check_power", "consecutive_rounds", "count_physical_cores",
    "cpu_model", "device_facts", "fill", "main", "measurement", "ort_build", "ort_commands", "ort_profile",
    "parse_cpuinfo_cores", "parse_nv_tegra_release", "parse_nvpmodel", "parse_tegrastats", "power_mode",
    "profile_json", "read_clocks", "read_trace", "run", "run_quiet", "run_step", "say",
    "sysfs_cores", "trtexec_commands", "verify_bundle", "version_matches",
]
