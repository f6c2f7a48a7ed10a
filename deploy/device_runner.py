"""The half of ``spiral deploy`` that runs on the device, shipped inside the bundle.

``python3 runner/device_runner.py run --bundle DIR --manifest-sha256 HEX --cache DIR``:
verify every file of the bundle against its manifest (whose own hash comes from the command line),
record the device's facts (L4T/JetPack, power mode, clocks, TensorRT), refuse a power mode other
than the target's, build the engine with the manifest's exact command (or reuse the one cached
under ``--cache`` for the same ONNX, flags and runtime version), profile it with the manifest's
exact command while ``tegrastats`` runs where it exists, and write ``results/``: ``profile.json``
(the schema of ``deploy.profiler.Profile``), ``device.json`` and ``run.json``.

It needs Python 3.8 and the standard library, numpy to summarize, and onnxruntime for CPU targets.
It imports only the modules shipped next to it (``deploy/errors.py``, ``deploy/stats.py``,
``deploy/sampling.py`` and ``deploy/verdict.py``, whose rounds every spiral measurement uses, and
``deploy/trtexec_parse.py``). A failure is one line ``SPIRAL-DEVICE-ERROR <kind>: <message>`` on
stderr and exit status 3; ``spiral deploy`` turns it into its own one-line error.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ERROR_MARK = "SPIRAL-DEVICE-ERROR"
EXIT_ERROR = 3
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1  # deploy.profiler.SCHEMA_VERSION
BUILD_TIMEOUT_S = 3600
ENGINE_FILE = "engine"
_NO_SPACE = "No space left on device"

# L4T release -> JetPack, from NVIDIA's JetPack archive; other releases report the JetPack major only.
_JETPACK = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
_JETPACK_MAJOR = {"32": "4", "35": "5", "36": "6", "38": "7"}
_GPU_DEVFREQ = re.compile(r"\.(gpu|gp10b|gv11b|ga10b|gb10b)$")


class DeviceError(Exception):
    """A failure with a kind ``spiral deploy`` recognizes: checksum, missing-tool, power-mode,
    unsupported, build-failed, profile-failed, disk-full."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def say(message: str) -> None:
    print(f"device: {message}", flush=True)


# ---- verification -------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_bundle(bundle: Path, manifest_sha256: str) -> dict:
    """The manifest, once it and every file it lists match their sha256."""
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file() or sha256_file(manifest_path) != manifest_sha256:
        raise DeviceError("checksum", f"{MANIFEST} is missing or differs from the one sent: the copy is incomplete")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in sorted(manifest["files"].items()):
        path = bundle / name
        if bundle.resolve() not in [path.resolve(), *path.resolve().parents]:  # Python 3.8: no is_relative_to
            raise DeviceError("checksum", f"{name!r} points outside the bundle")
        if not path.is_file():
            raise DeviceError("checksum", f"{name} is missing: the copy is incomplete")
        if sha256_file(path) != expected:
            raise DeviceError("checksum", f"{name} does not match its sha256: the copy was cut off or altered")
    say(f"verified the sha256 of {len(manifest['files'])} files")
    return manifest


# ---- device facts -------------------------------------------------------------------------------


def parse_nv_tegra_release(text: str) -> dict | None:
    """L4T release, JetPack and board from ``/etc/nv_tegra_release``."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    major, revision = match.group(1), match.group(2)
    if revision.count(".") == 0:
        revision += ".0"
    l4t = f"{major}.{revision}"
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    return {
        "l4t": l4t,
        "jetpack": _JETPACK.get(l4t) or (f"{_JETPACK_MAJOR[major]}.x" if major in _JETPACK_MAJOR else None),
        "board": board.group(1) if board else None,
        "release_line": text.strip().splitlines()[0],
    }


def parse_nvpmodel(text: str) -> dict | None:
    """``{"name": "MAXN", "id": 0}`` from ``nvpmodel -q`` (the mode name, then its id on its own line)."""
    match = re.search(r"NV Power Mode:\s*(\S+)[^\n]*(?:\n\s*(\d+)\s*(?:\n|$))?", text)
    if not match:
        return None
    return {"name": match.group(1), "id": int(match.group(2)) if match.group(2) else None}


def _stat(values: list[float]) -> dict:
    return {"mean": round(sum(values) / len(values), 3), "max": max(values)}


def parse_tegrastats(text: str) -> dict | None:
    """Means and maxima of RAM, CPU and GPU load, GPU clock, temperatures and power rails.

    Handles the formats of JetPack 4 (``VDD_IN 3140/3208``, ``POM_5V_IN 2545/2547``) to JetPack 6
    (``VDD_IN 4488mW/4488mW``, ``GR3D_FREQ 0%@[305]``); -256 C is tegrastats' "no sensor".
    """
    ram: list[float] = []
    ram_total = None
    cpu: list[float] = []
    gpu: list[float] = []
    gpu_mhz: list[float] = []
    temps: dict[str, list[float]] = {}
    rails: dict[str, list[float]] = {}
    samples = 0
    for line in text.splitlines():
        ram_match = re.search(r"\bRAM (\d+)/(\d+)MB", line)
        if not ram_match:
            continue
        samples += 1
        ram.append(float(ram_match.group(1)))
        ram_total = float(ram_match.group(2))
        cores = re.search(r"\bCPU \[([^\]]*)\]", line)
        if cores:
            loads = [float(c.split("%")[0]) for c in cores.group(1).split(",") if "%" in c]
            if loads:
                cpu.append(sum(loads) / len(loads))
        gr3d = re.search(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?", line)
        if gr3d:
            gpu.append(float(gr3d.group(1)))
            if gr3d.group(2):
                gpu_mhz.append(max(float(f) for f in gr3d.group(2).split(",") if f))
        for name, value in re.findall(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?[\d.]+)C\b", line):
            if float(value) > -256:
                temps.setdefault(name, []).append(float(value))
        for name, current, _average in re.findall(r"\b((?:VDD|VIN|POM)[A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b", line):
            rails.setdefault(name, []).append(float(current))
    if not samples:
        return None
    return {
        "samples": samples,
        "ram_used_mb": _stat(ram),
        "ram_total_mb": ram_total,
        "cpu_load_pct": _stat(cpu) if cpu else None,
        "gpu_load_pct": _stat(gpu) if gpu else None,
        "gpu_freq_mhz": _stat(gpu_mhz) if gpu_mhz else None,
        "temperature_c": {name: max(values) for name, values in temps.items()},
        "power_mw": {name: _stat(values) for name, values in rails.items()},
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def read_clocks(root: Path = Path("/")) -> dict:
    """CPU and GPU clock limits from sysfs; ``jetson_clocks`` is on when every minimum equals its maximum.

    ``jetson_clocks`` pins each CPU's and the GPU's minimum frequency to its maximum; reading sysfs
    needs no root, unlike ``jetson_clocks --show``.
    """
    cpus = {}
    for freq in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        values = {key: _read(freq / f"scaling_{key}_freq") for key in ("min", "max", "cur")}
        if values["min"] and values["max"]:
            cpus[freq.parent.name] = {key: int(v) for key, v in values.items() if v and v.isdigit()}
    gpu = None
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        if _GPU_DEVFREQ.search(dev.name):
            values = {key: _read(dev / f"{key}_freq") for key in ("min", "max", "cur")}
            gpu = {"device": dev.name, **{key: int(v) for key, v in values.items() if v and v.isdigit()}}
            break
    locked = [c["min"] == c["max"] for c in cpus.values() if "min" in c and "max" in c]
    if gpu is not None and "min" in gpu and "max" in gpu:
        locked.append(gpu["min"] == gpu["max"])
    return {"cpu_khz": cpus, "gpu_hz": gpu, "jetson_clocks": all(locked) if locked and gpu is not None else None}


def _run_quiet(argv: list[str], timeout: float = 20) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return done.returncode, done.stdout.decode(errors="replace")


def power_mode() -> dict | None:
    """``nvpmodel -q``, or ``sudo -n nvpmodel -q`` where the query needs root; None without nvpmodel."""
    if shutil.which("nvpmodel") is None:
        return None
    for argv in (["nvpmodel", "-q"], ["sudo", "-n", "nvpmodel", "-q"]):
        code, output = _run_quiet(argv)
        parsed = parse_nvpmodel(output) if code == 0 else None
        if parsed:
            return parsed
    return {"name": None, "id": None, "error": output.strip().splitlines()[-1] if output.strip() else f"exit {code}"}


def cpu_model() -> str:
    for line in (_read(Path("/proc/cpuinfo")) or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def device_facts() -> dict:
    release = _read(Path("/etc/nv_tegra_release"))
    return {
        "hostname": platform.node(),
        "model": _read(Path("/proc/device-tree/model")),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "l4t": parse_nv_tegra_release(release) if release else None,
        "power_mode": power_mode(),
        "clocks": read_clocks(),
    }


def check_power(expected: dict | None, facts: dict) -> None:
    """Refuse to measure in another power state than the target's: the numbers would not count."""
    if not expected:
        return
    mode = facts["power_mode"]
    want_id, want_name = expected.get("nvpmodel_id"), expected.get("nvpmodel_name")
    if want_id is not None or want_name is not None:
        if mode is None:
            raise DeviceError("missing-tool", "the target expects an nvpmodel power mode but the device has no nvpmodel")
        if mode.get("error"):
            raise DeviceError("power-mode", f"cannot read the power mode with nvpmodel -q: {mode['error']}")
        if (want_id is not None and mode["id"] != want_id) or (want_name is not None and mode["name"] != want_name):
            wanted = " ".join(w for w in (want_name, f"(id {want_id})" if want_id is not None else None) if w)
            fix = f"sudo nvpmodel -m {want_id}" if want_id is not None else "sudo nvpmodel -m <id of that mode>"
            raise DeviceError("power-mode", f"the device is in power mode {mode['name']} (id {mode['id']}); the target "
                                            f"expects {wanted}: run `{fix}` on the device")
    want_clocks = expected.get("jetson_clocks")
    have_clocks = facts["clocks"]["jetson_clocks"]
    if want_clocks is not None and have_clocks is not None and have_clocks != want_clocks:
        fix = "sudo jetson_clocks" if want_clocks else "sudo jetson_clocks --restore"
        state = "on" if have_clocks else "off"
        raise DeviceError("power-mode", f"jetson_clocks is {state} on the device, the target expects it "
                                        f"{'on' if want_clocks else 'off'}: run `{fix}` on the device")


# ---- running the manifest's commands ------------------------------------------------------------


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    """The manifest's command with ``{python}``, ``{engine}``, ``{timing_cache}``, ``{times}`` filled in."""
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def run_step(kind: str, argv: list[str], cwd: Path, log: Path, timeout_s: float) -> str:
    """Run one build or profile command; its output goes to ``log``. Failures become DeviceErrors."""
    try:
        done = subprocess.run(argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise DeviceError("missing-tool", f"{argv[0]} not found on the device") from None
    except subprocess.TimeoutExpired:
        raise DeviceError(kind, f"{Path(argv[0]).name} did not finish within {timeout_s:.0f} s") from None
    output = done.stdout.decode(errors="replace")
    log.write_text(" ".join(argv) + "\n" + output)
    if done.returncode == 0:
        return output
    if _NO_SPACE in output:
        raise DeviceError("disk-full", f"{Path(argv[0]).name}: {_NO_SPACE}")
    nested = [line for line in output.splitlines() if line.startswith(ERROR_MARK)]
    if nested:
        nested_kind, _, message = nested[-1][len(ERROR_MARK):].strip().partition(": ")
        raise DeviceError(nested_kind, message)
    errors = [line.strip() for line in output.splitlines() if "[E]" in line]
    detail = " | ".join(errors[-3:]) or " | ".join(output.strip().splitlines()[-3:]) or f"exit {done.returncode}"
    raise DeviceError(kind, f"{Path(argv[0]).name} exited with {done.returncode}: {detail}")


class Tegrastats:
    """``tegrastats`` in the background while the profile runs, where the device has it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Tegrastats:
        if shutil.which("tegrastats"):
            self.handle = open(self.log, "wb")
            self.process = subprocess.Popen(["tegrastats", "--interval", "500"], stdout=self.handle,
                                            stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.handle.close()

    def summary(self) -> dict | None:
        return parse_tegrastats(self.log.read_text(errors="replace")) if self.process is not None else None


def version_matches(version: tuple[int, ...], supported: str) -> bool:
    parts = tuple(int(p) for p in supported.split("."))
    return version[: len(parts)] == parts


def trtexec_commands(manifest: dict, facts: dict) -> tuple[str, dict]:
    """(runtime tag, {"build", "profile"}) for the TensorRT version that this device's trtexec reports."""
    from deploy.errors import InputError
    from deploy.trtexec_parse import parse_version

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
    code, output = _run_quiet([binary, "--help"], timeout=60)
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


def measurement(batch: int, shapes: dict, trace: dict, cv_threshold: float) -> dict:
    """A ``deploy.profiler.Measurement`` as JSON, with the rounds the gate judges."""
    from deploy.stats import robust_cv, summarize

    samples = [float(s) for s in trace["samples_ms"]]
    stats = summarize(samples)
    stats["robust_cv"] = robust_cv(samples)
    return {
        "batch": batch,
        "input_shapes": shapes,
        "warmup_iterations": int(trace["warmup_iterations"]),
        "warmup_s": float(trace["warmup_s"]),
        "samples_ms": samples,
        "stats": stats,
        "stable": stats["robust_cv"] <= cv_threshold,
        "stop_reason": trace["stop_reason"],
        "throughput_per_s": batch * 1e3 / stats["mean"] if stats["mean"] > 0 else float("inf"),
        "round_sizes": [int(n) for n in trace["round_sizes"]],
        "cpu_wait": [None if w is None else float(w) for w in trace.get("cpu_wait", [])],
    }


def consecutive_rounds(samples: int, block_calls: int) -> list:
    """Round sizes for samples a tool timed back to back (trtexec): consecutive blocks of ``block_calls``."""
    sizes = [block_calls] * (samples // block_calls)
    return sizes + ([samples % block_calls] if samples % block_calls else [])


def read_trace(manifest: dict, output: str, times: Path) -> dict:
    """Warm-up, per-query samples and their rounds from the profile command's output and times file."""
    if manifest["backend"] == "ort-cpu":
        return json.loads(times.read_text())
    from deploy.errors import InputError
    from deploy.trtexec_parse import parse_export_times, parse_summary

    try:
        summary = parse_summary(output)
        records = parse_export_times(times.read_text(), skip=summary.warmup_queries or 0)
    except (InputError, OSError) as exc:
        raise DeviceError("profile-failed", f"cannot read the trtexec results: {exc}") from None
    return {
        "samples_ms": [float(r["computeMs"]) for r in records],
        "round_sizes": consecutive_rounds(len(records), manifest["profile_settings"]["block_calls"]),
        "warmup_iterations": summary.warmup_queries or 0,
        "warmup_s": (summary.warmup_ms or 0.0) / 1e3,
        "stop_reason": "external_trace",
        "runner_settings": {"throughput_qps": summary.throughput_qps, "timer": "trtexec --exportTimes (computeMs)",
                            "copies_included": False},
    }


def run(bundle: Path, manifest_sha256: str, cache: Path) -> None:
    manifest = verify_bundle(bundle, manifest_sha256)
    target, backend, settings = manifest["target"], manifest["backend"], manifest["profile_settings"]
    results = bundle / "results"
    results.mkdir(exist_ok=True)
    facts = device_facts()
    check_power(target["power"], facts)
    tag, commands = trtexec_commands(manifest, facts) if backend == "trtexec" else ort_commands(manifest, facts)
    cache.mkdir(parents=True, exist_ok=True)
    engine_dir = cache / f"{manifest['engine_key']}-{tag}"
    times = results / "times.json"
    values = {
        "python": sys.executable,
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
        "engine": str(engine_dir / ENGINE_FILE),
        "timing_cache": str(cache / f"timing-{tag}.cache"),
        "times": str(times),
    }
    cached = build_engine(manifest, bundle, engine_dir, commands, values, results)

    profile_argv = fill(commands["profile"], values)
    say("profiling: " + " ".join(profile_argv))
    with Tegrastats(results / "tegrastats.log") as tegrastats:
        output = run_step("profile-failed", profile_argv, bundle, results / "profile.log",
                          settings["warmup_s"] + settings["max_duration_s"] + 600)
    facts["tegrastats"] = tegrastats.summary()
    trace = read_trace(manifest, output, times)
    times.unlink()  # its samples go into profile.json
    m = measurement(manifest["batch"], manifest["model"]["input_shapes"], trace, settings["cv_threshold"])
    say(f"{len(m['samples_ms'])} samples in {len(m['round_sizes'])} rounds, p50 {m['stats']['p50']:.3f} ms, "
        f"robust cv {m['stats']['robust_cv']:.1%}")

    runner_settings = {
        "engine": values["engine"],
        "engine_from_cache": cached,
        "precision": target["precision"],
        "runtime": tag,
        "build_command": fill(commands["build"], values),
        "profile_command": profile_argv,
        **trace.get("runner_settings", {}),
    }
    if backend == "trtexec":
        trtexec = target["trtexec"]
        runner_settings.update(trtexec=trtexec["path"], tensorrt=facts["tensorrt"], dla=trtexec["dla"],
                               workspace_mib=trtexec["workspace_mib"])
    profile = {
        "schema_version": SCHEMA_VERSION,
        "backend": backend,
        "model_path": manifest["model"]["file"],
        "model_sha256": manifest["model"]["sha256"],
        "fingerprint": {
            "backend": backend,
            "cpu": facts["cpu"],
            "machine": facts["machine"],
            "physical_cores": facts["logical_cores"],
            "logical_cores": facts["logical_cores"],
            "threads": runner_settings.get("threads"),
            "os": facts["os"],
            "python": facts["python"],
            "libraries": {key: facts[key] for key in ("onnxruntime", "numpy", "tensorrt") if key in facts},
            "gpu": {"name": facts["model"], "tensorrt": facts["tensorrt"]} if backend == "trtexec" else None,
            "precision": target["precision"],
            "device": facts,
        },
        "runner_settings": runner_settings,
        "settings": {**settings, "inputs": "random"},
        "measurements": [m],
    }
    write_json(results / "device.json", facts)
    write_json(results / "run.json", {"engine_from_cache": cached, "runtime": tag, "engine_dir": str(engine_dir)})
    write_json(results / "profile.json", profile)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(str(tmp), str(path))


# ---- the ONNX Runtime steps of CPU targets ------------------------------------------------------

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _session(model: Path, threads: int, optimize: bool, save_to: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for every load failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _NO_SPACE in str(exc):
            raise DeviceError("disk-full", f"onnxruntime: {_NO_SPACE}") from None
        raise DeviceError("build-failed", f"ONNX Runtime cannot load {model.name}: {first}") from None


def ort_build(model: Path, engine: Path, threads: int) -> None:
    """The ``build`` of a CPU target: ONNX Runtime's fully optimized graph, saved for the profile step."""
    _session(model, threads, optimize=True, save_to=engine)
    if not engine.is_file():
        raise DeviceError("build-failed", "ONNX Runtime wrote no optimized model")


def ort_profile(engine: Path, times: Path, threads: int, batch: int, settings: dict) -> None:
    """Time ``session.run`` on seeded random inputs in rounds, as ``deploy.profiler.measure`` does
    (``deploy.sampling``, shipped with the bundle)."""
    import numpy as np

    from deploy.sampling import ProfileSettings, sample_rounds

    session = _session(engine, threads, optimize=False)
    rng = np.random.default_rng(settings["seed"])
    feed = {}
    for node in session.get_inputs():
        if node.type not in _ORT_TYPES:
            raise DeviceError("profile-failed", f"input '{node.name}' has unsupported type {node.type}")
        shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(node.shape)]
        if any(not isinstance(d, int) for d in shape):
            raise DeviceError("profile-failed", f"input '{node.name}' has dynamic dimensions besides the batch: {node.shape}")
        dtype = np.dtype(_ORT_TYPES[node.type])
        if np.issubdtype(dtype, np.floating):
            feed[node.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[node.name] = rng.integers(0, 2, size=shape).astype(dtype)
    outputs = [o.name for o in session.get_outputs()]

    def infer() -> float:
        start = time.perf_counter()
        session.run(outputs, feed)
        return time.perf_counter() - start

    rounds = sample_rounds({"model": infer}, ProfileSettings(**settings))
    series = rounds.series["model"]
    write_json(times, {
        "samples_ms": series.samples_ms,
        "round_sizes": [len(block) for block in series.blocks],
        "cpu_wait": rounds.cpu_wait,
        "warmup_iterations": series.warmup_iterations,
        "warmup_s": series.warmup_s,
        "stop_reason": rounds.stop_reason,
        "runner_settings": {
            "threads": threads, "inter_op_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL (at build)", "providers": session.get_providers(),
            "copies_included": True,
        },
    })


# ---- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device_runner.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="verify, build (or reuse), profile and write results/")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--manifest-sha256", required=True)
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("ort-build", help="save ONNX Runtime's optimized graph (the engine of CPU targets)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p = sub.add_parser("ort-profile", help="time the optimized graph with ONNX Runtime")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--times", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--settings", required=True, help="the profile settings as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.bundle.resolve(), args.manifest_sha256, args.cache.resolve())
        elif args.command == "ort-build":
            ort_build(args.model, args.engine, args.threads)
        else:
            ort_profile(args.engine, args.times, args.threads, args.batch, json.loads(args.settings))
    except DeviceError as exc:
        print(f"{ERROR_MARK} {exc.kind}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        kind = "disk-full" if exc.errno == errno.ENOSPC else "io"
        print(f"{ERROR_MARK} {kind}: {exc.strerror}: {exc.filename or ''}".rstrip(": "), file=sys.stderr, flush=True)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
