"""The device runner: parsing real Jetson outputs, power checks, checksum verification, and whole runs
of the shipped runner on this machine's CPU (what it does on a device, minus SSH)."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import device_runner as dr
from deploy.bundle import RUNNER, RUNNER_FILES, Bundle, build_bundle
from deploy.profiler import SCHEMA_VERSION, Measurement, Profile, ProfileSettings
from deploy.target_profiles import parse_target

FIXTURES = Path(__file__).parents[1] / "fixtures"
JETSON = FIXTURES / "jetson"


def cpu_target(**overrides: object):
    data = {
        "name": "cpu-test", "backend": "ort-cpu", "ssh": {"host": "localhost"},
        "measure": {"threads": 1, "profile": {"warmup_s": 0.02, "block_s": 0.01, "min_rounds": 5,
                                             "min_duration_s": 0.1, "max_duration_s": 0.5}},
        "budget": {"latency": {"max_ms": 100.0}},
    }
    data.update(overrides)
    return parse_target(data, "test")


def run_runner(bundle: Bundle, cache: Path, python: list[str] | None = None) -> subprocess.CompletedProcess:
    argv = [*(python or [sys.executable]), str(bundle.root / RUNNER), "run", "--bundle", str(bundle.root),
            "--manifest-sha256", bundle.manifest_sha256, "--cache", str(cache)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


# ---- real outputs published by Jetson users (tests/fixtures/jetson/README.md) --------------------


@pytest.mark.parametrize(
    ("name", "l4t", "jetpack", "board"),
    [
        ("nv_tegra_release-r35.4.1.txt", "35.4.1", "5.1.2", "t186ref"),
        ("nv_tegra_release-r36.4.4.txt", "36.4.4", "6.2.1", "generic"),
        ("nv_tegra_release-r36.4.3.txt", "36.4.3", "6.2", "generic"),
    ],
)
def test_nv_tegra_release(name: str, l4t: str, jetpack: str, board: str) -> None:
    parsed = dr.parse_nv_tegra_release((JETSON / name).read_text())
    assert (parsed["l4t"], parsed["jetpack"], parsed["board"]) == (l4t, jetpack, board)
    assert parsed["release_line"].startswith(f"# R{l4t.split('.')[0]} (release)")


def test_nv_tegra_release_of_an_unlisted_release_gives_the_jetpack_major() -> None:
    assert dr.parse_nv_tegra_release("# R36 (release), REVISION: 9.0, GCID: 1, BOARD: generic")["jetpack"] == "6.x"
    assert dr.parse_nv_tegra_release("not a release file") is None


@pytest.mark.parametrize(
    ("name", "mode"),
    [("nvpmodel-q-agx-orin-mode_30w.txt", {"name": "MODE_30W", "id": 2}),
     ("nvpmodel-q-thor-maxn.txt", {"name": "MAXN", "id": 0})],
)
def test_nvpmodel_query(name: str, mode: dict) -> None:
    assert dr.parse_nvpmodel((JETSON / name).read_text()) == mode


def test_tegrastats_agx_orin_jetpack6() -> None:
    s = dr.parse_tegrastats((JETSON / "tegrastats-agx-orin-64gb-jetpack6.txt").read_text())
    assert s["samples"] == 1
    assert s["ram_used_mb"] == {"mean": 4321.0, "max": 4321.0} and s["ram_total_mb"] == 62801.0
    assert s["cpu_load_pct"]["max"] == 0.0
    assert s["gpu_load_pct"]["max"] == 0.0 and s["gpu_freq_mhz"]["max"] == 0.0
    assert s["temperature_c"]["CPU"] == 44.562 and s["temperature_c"]["tj"] == 44.343
    assert "GPU" not in s["temperature_c"] and "CV0" not in s["temperature_c"]  # -256C: no sensor
    assert s["power_mw"]["VDD_GPU_SOC"]["mean"] == 2340.0 and s["power_mw"]["VIN_SYS_5V0"]["max"] == 4025.0
    assert "NC" not in s["power_mw"]


def test_tegrastats_jetpack46_several_lines() -> None:
    s = dr.parse_tegrastats((JETSON / "tegrastats-jetpack4.6.txt").read_text())
    assert s["samples"] == 6
    assert s["ram_used_mb"]["max"] == 1689.0
    # Mean core load per line (two cores off): 1.25, 1.0, 0.5, 1.0, 0.75, 1.5 %.
    assert s["cpu_load_pct"] == {"mean": pytest.approx(1.0), "max": pytest.approx(1.5)}
    assert s["gpu_load_pct"] == {"mean": 0.0, "max": 0.0} and s["gpu_freq_mhz"] is None
    assert s["temperature_c"]["thermal"] == 50.3 and s["power_mw"] == {}


def test_tegrastats_tx2_rails_without_units() -> None:
    s = dr.parse_tegrastats((JETSON / "tegrastats-tx2-2019.txt").read_text())
    assert s["power_mw"]["VDD_IN"] == {"mean": 3140.0, "max": 3140.0}
    assert s["power_mw"]["VDD_SYS_GPU"]["max"] == 153.0 and "RAM" not in s["power_mw"]
    assert s["cpu_load_pct"]["max"] == pytest.approx(60 / 6)


def test_tegrastats_without_samples() -> None:
    assert dr.parse_tegrastats("") is None


# ---- clocks, from sysfs trees built here (no public Orin `jetson_clocks --show` was found) --------


def _sysfs(root: Path, cpu: tuple[int, int], gpu: tuple[int, int] | None) -> Path:
    for n in range(2):
        freq = root / f"sys/devices/system/cpu/cpu{n}/cpufreq"
        freq.mkdir(parents=True)
        for key, value in zip(("min", "max", "cur"), (*cpu, cpu[1])):
            (freq / f"scaling_{key}_freq").write_text(f"{value}\n")
    if gpu is not None:
        dev = root / "sys/class/devfreq/17000000.ga10b"
        dev.mkdir(parents=True)
        for key, value in zip(("min", "max", "cur"), (*gpu, gpu[1])):
            (dev / f"{key}_freq").write_text(f"{value}\n")
    return root


def test_clocks_locked_by_jetson_clocks(tmp_path: Path) -> None:
    clocks = dr.read_clocks(_sysfs(tmp_path, (1510400, 1510400), (624750000, 624750000)))
    assert clocks["jetson_clocks"] is True
    assert clocks["cpu_khz"]["cpu0"] == {"min": 1510400, "max": 1510400, "cur": 1510400}
    assert clocks["gpu_hz"]["device"] == "17000000.ga10b"


def test_clocks_scaling(tmp_path: Path) -> None:
    assert dr.read_clocks(_sysfs(tmp_path, (729600, 1510400), (306000000, 624750000)))["jetson_clocks"] is False


def test_clocks_unknown_without_a_jetson_gpu(tmp_path: Path) -> None:
    assert dr.read_clocks(_sysfs(tmp_path, (800000, 3000000), None))["jetson_clocks"] is None


# ---- the power state the target expects ---------------------------------------------------------


def _facts(mode: dict | None, clocks: bool | None) -> dict:
    return {"power_mode": mode, "clocks": {"jetson_clocks": clocks}}


def test_power_mode_matches() -> None:
    dr.check_power({"nvpmodel_id": 2, "nvpmodel_name": "MODE_30W", "jetson_clocks": True},
                   _facts(dr.parse_nvpmodel((JETSON / "nvpmodel-q-agx-orin-mode_30w.txt").read_text()), True))


def test_wrong_power_mode_is_refused_with_the_fix() -> None:
    facts = _facts(dr.parse_nvpmodel((JETSON / "nvpmodel-q-agx-orin-mode_30w.txt").read_text()), True)
    with pytest.raises(dr.DeviceError, match=r"power mode MODE_30W \(id 2\).*sudo nvpmodel -m 0") as info:
        dr.check_power({"nvpmodel_id": 0, "nvpmodel_name": "MAXN", "jetson_clocks": True}, facts)
    assert info.value.kind == "power-mode"


def test_jetson_clocks_off_is_refused() -> None:
    with pytest.raises(dr.DeviceError, match="jetson_clocks is off.*sudo jetson_clocks"):
        dr.check_power({"nvpmodel_id": None, "nvpmodel_name": None, "jetson_clocks": True}, _facts(None, False))


def test_expected_power_mode_without_nvpmodel() -> None:
    with pytest.raises(dr.DeviceError, match="no nvpmodel") as info:
        dr.check_power({"nvpmodel_id": 0, "nvpmodel_name": None, "jetson_clocks": None}, _facts(None, None))
    assert info.value.kind == "missing-tool"


def test_no_expectation_checks_nothing() -> None:
    dr.check_power(None, _facts(None, None))


# ---- checksums ----------------------------------------------------------------------------------


def test_verify_intact_bundle(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    assert dr.verify_bundle(bundle.root, bundle.manifest_sha256)["engine_key"] == bundle.engine_key


def test_a_truncated_model_fails_verification(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    model = bundle.root / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(dr.DeviceError, match="model.onnx does not match its sha256: the copy was cut off") as info:
        dr.verify_bundle(bundle.root, bundle.manifest_sha256)
    assert info.value.kind == "checksum"


def test_a_missing_file_or_other_manifest_fails_verification(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    with pytest.raises(dr.DeviceError, match="manifest.json is missing or differs"):
        dr.verify_bundle(bundle.root, "0" * 64)
    (bundle.root / "runner/deploy/stats.py").unlink()
    with pytest.raises(dr.DeviceError, match="runner/deploy/stats.py is missing"):
        dr.verify_bundle(bundle.root, bundle.manifest_sha256)


# ---- reading trtexec's results (the trtexec backend's parser, on its real transcript) -----------


def test_read_trace_of_trtexec(tmp_path: Path) -> None:
    # The --exportTimes file is built here in the format of TensorRT's sampleReporting.cpp
    # (tests/fixtures/trtexec/README.md: no real one is public).
    output = (FIXTURES / "trtexec" / "trtexec-10.16.0-model-trained.log").read_text()
    records = [{"startComputeMs": i, "computeMs": 0.03 + i * 1e-4, "latencyMs": 0.04 + i * 1e-4}
               for i in range(3349 + 5)]
    times = tmp_path / "times.json"
    times.write_text(json.dumps(records))
    trace = dr.read_trace({"backend": "trtexec", "profile_settings": {"block_calls": 2}}, output, times)
    assert trace["warmup_iterations"] == 3349 and trace["warmup_s"] == pytest.approx(0.2)
    assert trace["samples_ms"] == pytest.approx([0.03 + i * 1e-4 for i in range(3349, 3354)])
    assert trace["round_sizes"] == [2, 2, 1]  # trtexec's back-to-back queries, in rounds of block_calls
    assert trace["runner_settings"]["throughput_qps"] == 18392.0


def test_read_trace_of_broken_trtexec_output(tmp_path: Path) -> None:
    (tmp_path / "times.json").write_text("[]")
    with pytest.raises(dr.DeviceError, match="cannot read the trtexec results") as info:
        dr.read_trace({"backend": "trtexec"}, "no summary here", tmp_path / "times.json")
    assert info.value.kind == "profile-failed"


# ---- whole runs of the shipped runner, on this CPU ----------------------------------------------


@pytest.mark.slow
def test_run_writes_a_profile_and_reuses_the_engine(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    cache = tmp_path / "cache"
    done = run_runner(bundle, cache)
    assert done.returncode == 0, done.stderr
    assert "verified the sha256 of 8 files" in done.stdout
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
    assert not (results / "times.json").exists()
    engines = list(cache.iterdir())
    assert len(engines) == 1 and engines[0].name.startswith(bundle.engine_key)

    shutil.rmtree(results)
    shutil.rmtree(bundle.root / "build", ignore_errors=True)
    again = run_runner(bundle, cache)
    assert again.returncode == 0, again.stderr
    assert "reusing the engine cached" in again.stdout
    assert json.loads((results / "run.json").read_text())["engine_from_cache"] is True


def test_missing_trtexec_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    target = cpu_target(backend="trtexec", precision="fp16", trtexec={"path": str(tmp_path / "no" / "trtexec")})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache")
    assert done.returncode == dr.EXIT_ERROR
    assert done.stderr.strip().splitlines()[-1] == (
        f"{dr.ERROR_MARK} missing-tool: trtexec not found at {tmp_path / 'no' / 'trtexec'}: "
        "install TensorRT (JetPack) or set trtexec.path in the target"
    )


def test_python_without_onnxruntime_is_one_line(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache", python=[sys.executable, "-S"])  # no site-packages
    assert done.returncode == dr.EXIT_ERROR
    assert done.stderr.strip().startswith(f"{dr.ERROR_MARK} missing-tool:")
    assert "pip install numpy onnxruntime" in done.stderr


@pytest.mark.gpu
def test_trtexec_target_on_this_machine(tiny_onnx: Path, tmp_path: Path) -> None:
    binary = shutil.which("trtexec")
    if binary is None:
        pytest.skip("no trtexec here: building and profiling with trtexec needs TensorRT on an NVIDIA GPU "
                    "(a Jetson for the Jetson targets)")
    from deploy.trtexec_parse import parse_version

    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False).stdout
    major, minor, _ = parse_version(help_text)
    target = cpu_target(backend="trtexec", precision="fp16" if major < 11 else "fp32",
                        trtexec={"path": binary, "tensorrt": [f"{major}.{minor}"]})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "b")
    done = run_runner(bundle, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    profile = Profile.load(bundle.root / "results" / "profile.json")
    assert profile.runner_settings["tensorrt"].startswith(f"{major}.{minor}") and profile.stat("p50") > 0


# ---- what the runner may rely on, on a Jetson with JetPack 5 (Python 3.8) ----------------------


def test_shipped_runner_imports_only_the_standard_library_numpy_onnxruntime_and_its_modules() -> None:
    shipped = {"deploy." + Path(name).stem for name in RUNNER_FILES if name.startswith("runner/deploy/")}
    shipped.add("deploy")
    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "__future__"}
    for source in RUNNER_FILES.values():
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                assert name in shipped or name.split(".")[0] in allowed, f"{source.name} imports {name}"


@pytest.mark.parametrize("name", sorted(RUNNER_FILES))
def test_shipped_files_are_python_38(name: str) -> None:
    source = RUNNER_FILES[name].read_text()
    ast.parse(source, feature_version=(3, 8))
    for newer in (".removeprefix(", ".removesuffix(", "functools.cache(", "zip(strict"):
        assert newer not in source, f"{name} uses {newer!r}, which Python 3.8 lacks"
    # ``from __future__ import annotations`` defers annotations, not module-level aliases: on 3.8
    # ``Callable[[], float]`` from collections.abc (or ``list[int]``) fails when the module is imported.
    tree = ast.parse(source)
    abc_names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "collections.abc" for a in node.names}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name):
                    generic = sub.value.id
                    assert generic not in abc_names | {"list", "dict", "tuple", "set", "frozenset", "type"}, (
                        f"{name} subscripts {generic} at import time, which Python 3.8 cannot")


@pytest.mark.parametrize(
    ("version", "supported", "matches"),
    [((8, 5, 2), "8.5", True), ((10, 3, 0), "10.3", True), ((10, 7, 0), "10", True), ((10, 3, 0), "8.5", False),
     ((11, 0, 1), "10", False), ((10, 30, 0), "10.3", False)],
)
def test_tensorrt_version_matching(version: tuple[int, int, int], supported: str, matches: bool) -> None:
    assert dr.version_matches(version, supported) is matches


def test_placeholders_are_filled() -> None:
    argv = ["{python}", "--engine={engine}", "--threads", "{cores}", "--saveEngine={engine}"]
    assert dr.fill(argv, {"python": "/usr/bin/python3", "engine": "/c/e", "cores": "6"}) == [
        "/usr/bin/python3", "--engine=/c/e", "--threads", "6", "--saveEngine=/c/e"]
