"""Whole runs of the shipped runner (``deploy/device_runner/bundle_run.py`` through ``cli.py``), from a
bundle folder in a real subprocess on this machine's CPU: what it does on a device, minus SSH."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from spiralprune.deploy.bundle import RUNNER_DIR, RUNNER_FILES, build_bundle, runner_command
from spiralprune.deploy.device_runner.errors import ERROR_MARK, EXIT_ERROR
from spiralprune.deploy.device_runner.facts import count_physical_cores
from spiralprune.deploy.profiler import SCHEMA_VERSION, Measurement, Profile, ProfileSettings
from tests.deploy.device_runner.runner_bundles import cpu_target, run_runner


@pytest.mark.slow
def test_run_writes_a_profile_and_reuses_the_engine(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    cache = tmp_path / "cache"
    done = run_runner(bundle, cache)
    assert done.returncode == 0, done.stderr
    assert len(bundle.manifest["files"]) == 1 + len(RUNNER_FILES)  # the model and every shipped module
    assert f"verified the sha256 of {len(bundle.manifest['files'])} files" in done.stdout
    results = bundle.root / "results"
    profile = Profile.load(results / "profile.json")
    data = json.loads((results / "profile.json").read_text())
    assert set(data) == {f.name for f in dataclasses.fields(Profile)} and data["schema_version"] == SCHEMA_VERSION
    assert set(data["measurements"][0]) == {f.name for f in dataclasses.fields(Measurement)}
    assert set(data["settings"]) == {*dataclasses.asdict(ProfileSettings()), "inputs"}
    m = profile.measurement(1)
    assert m.input_shapes == {"input": [1, 3, 16, 16]} and m.stats["p50"] > 0
    assert len(m.round_sizes) >= 5 and sum(m.round_sizes) == len(m.samples_ms) and "robust_cv" in m.stats
    assert profile.model_sha256 == bundle.manifest["model"]["sha256"]
    assert profile.runner_settings["threads"] == 1 and profile.runner_settings["engine_from_cache"] is False
    assert profile.fingerprint["device"]["python"] and "tegrastats" in profile.fingerprint["device"]
    logical = os.cpu_count() or 1
    assert profile.fingerprint["logical_cores"] == logical
    assert profile.fingerprint["physical_cores"] == count_physical_cores(logical=logical)  # null where unknown
    assert not any((results / name).exists() for name in ("times.json", "layers.json", "layer-info.json"))
    # ONNX Runtime's layers, profiled after every timed round on the device, named by the model's modules
    layers = m.layer_profile()
    assert layers.source == "onnxruntime" and len(layers.calls_per_round) == len(m.round_sizes)
    assert {"0", "2"} <= set(layers.by_name()) and m.layers["explanation"]["layers"]
    assert "twin session" in profile.runner_settings["layers"]
    engines = list(cache.iterdir())
    assert len(engines) == 1 and engines[0].name.startswith(bundle.engine_key)

    shutil.rmtree(results)
    shutil.rmtree(bundle.root / "build", ignore_errors=True)
    again = run_runner(bundle, cache)
    assert again.returncode == 0, again.stderr
    assert "reusing the engine cached" in again.stdout
    assert json.loads((results / "run.json").read_text())["engine_from_cache"] is True


@pytest.mark.slow
def test_the_bundle_runs_with_nothing_of_spiral_but_the_bundle(tiny_onnx: Path, tmp_path: Path) -> None:
    """``spiralprune deploy``'s own command line, in a copy of the bundle, by an interpreter without site (so without
    spiral's editable install); numpy and onnxruntime come from a PYTHONPATH entry as on a device."""
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "built")
    device = tmp_path / "device" / "runs" / "1"
    shutil.copytree(bundle.root, device)
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    libraries = os.pathsep.join(site.getsitepackages())
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run(["sh", "-c", runner_command(str(bare), bundle.manifest_sha256, "../../engines")],
                          cwd=device, env={**env, "PYTHONPATH": libraries}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert Profile.load(device / "results" / "profile.json").measurement(1).stats["p50"] > 0
    assert len(list((tmp_path / "device" / "engines").iterdir())) == 1
    # Where the runner's modules come from, for it (no site) and for its build and profile steps (site, whose
    # editable install of spiral comes after PYTHONPATH).
    for python in (str(bare), sys.executable):
        where = subprocess.run(
            [python, "-c", "import spiralprune.deploy.device_runner.cli as c, spiralprune.deploy.sampling as s; print(c.__file__, s.__file__)"],
            cwd=device, env={**env, "PYTHONPATH": f"{device / RUNNER_DIR}{os.pathsep}{libraries}"},
            capture_output=True, text=True, check=True).stdout.split()
        assert where == [str(device / RUNNER_DIR / "spiralprune" / "deploy" / "device_runner" / "cli.py"),
                         str(device / RUNNER_DIR / "spiralprune" / "deploy" / "sampling.py")]


def test_missing_trtexec_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    target = cpu_target(backend="trtexec", precision="fp16", trtexec={"path": str(tmp_path / "no" / "trtexec")})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache")
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip().splitlines()[-1] == (
        f"{ERROR_MARK} missing-tool: trtexec not found at {tmp_path / 'no' / 'trtexec'}: "
        "install TensorRT (JetPack) or set trtexec.path in the target"
    )


def test_python_without_onnxruntime_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache", python=[sys.executable, "-S"])  # no site-packages
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip().startswith(f"{ERROR_MARK} missing-tool:")
    assert "pip install numpy onnxruntime" in done.stderr


@pytest.mark.gpu
def test_trtexec_target_on_this_machine(tiny_onnx: Path, tmp_path: Path) -> None:
    binary = shutil.which("trtexec")
    if binary is None:
        pytest.skip("no trtexec here: building and profiling with trtexec needs TensorRT on an NVIDIA GPU "
                    "(a Jetson for the Jetson targets)")
    from spiralprune.deploy.trtexec_parse import parse_version

    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False).stdout
    major, minor, _ = parse_version(help_text)
    target = cpu_target(backend="trtexec", precision="fp16" if major < 11 else "fp32",
                        trtexec={"path": binary, "tensorrt": [f"{major}.{minor}"]})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    profile = Profile.load(bundle.root / "results" / "profile.json")
    assert profile.runner_settings["tensorrt"].startswith(f"{major}.{minor}") and profile.stat("p50") > 0


@pytest.mark.slow
def test_the_device_feeds_the_inputs_the_bundle_carries(tiny_onnx: Path, tmp_path: Path) -> None:
    """Validation samples given to the bundle (a graph with NMS is timed on real images) go with it as raw
    arrays at the target's batch, checked by sha256 like every file, and the device's profile says it fed them."""
    import numpy as np

    samples = np.random.default_rng(3).standard_normal((3, 3, 16, 16)).astype(np.float32)
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b", given={"input": samples})
    model = bundle.manifest["model"]
    assert model["inputs"] == "given" and model["input_files"] == {"input": "inputs/input.bin"}
    assert "inputs/input.bin" in bundle.manifest["files"]
    stored = np.fromfile(bundle.root / "inputs" / "input.bin", dtype=np.float32).reshape(1, 3, 16, 16)
    assert np.array_equal(stored, samples[:1])  # cycled to the target's batch, 1
    profile_command = bundle.manifest["commands"]["profile"]
    assert profile_command[-2:] == ["--inputs", '{"input": "inputs/input.bin"}']
    done = run_runner(bundle, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    profile = Profile.load(bundle.root / "results" / "profile.json")
    assert profile.settings["inputs"] == "given" and profile.measurement(1).stats["p50"] > 0

    (bundle.root / "inputs" / "input.bin").write_bytes(samples[:1].tobytes()[:-4])  # a file that lost a value
    failed = run_runner(bundle, tmp_path / "cache")
    assert failed.returncode == EXIT_ERROR and "inputs/input.bin" in failed.stderr  # its sha256 no longer matches
