"""Deploying over a real OpenSSH server on 127.0.0.1 (tests/deploy/sshd.py), host keys checked.

The "device" is this machine: a CPU target whose runner is ONNX Runtime in this venv's python.
Every fault must end in one InputError line, with the device's temporary directory removed.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spiralprune.core.errors import InputError
from spiralprune.deploy.bundle import build_bundle
from spiralprune.deploy.remote import Ssh, deploy_bundle, read_device_profile
from spiralprune.deploy.target_profiles import TargetProfile
from tests.deploy.sshd import HOST_ALIAS, SshServer, loopback_target, server  # noqa: F401 - server is a fixture


def leftovers(device: Path) -> list[str]:
    """What the deploys left in the device's temporary area (the engine cache is meant to stay)."""
    runs = device / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


def expect_fault(bundle, target: TargetProfile, tmp_path: Path, message: str) -> str:
    results = tmp_path / "results"
    with pytest.raises(InputError, match=message) as info:
        deploy_bundle(bundle, target, results, echo=lambda line: None)
    assert "\n" not in str(info.value)
    assert not results.exists()
    assert leftovers(Path(target.remote.dir)) == []
    return str(info.value)


def test_ssh_command_line_keeps_host_key_checking(server: SshServer, tmp_path: Path) -> None:
    target = loopback_target(server, tmp_path, ssh={"host": "box", "user": "me", "port": 2222,
                                                    "options": ["-i", "~/.ssh/key", "-o", "ConnectTimeout=3"]})
    argv = Ssh.for_target(target).argv("true")
    # The target's options come first, so they win (ssh keeps the first value of each option).
    assert argv[:5] == ["ssh", "-i", os.path.expanduser("~/.ssh/key"), "-o", "ConnectTimeout=3"]
    assert argv[argv.index("BatchMode=yes") - 1] == "-o"  # never a prompt: an unknown host key fails
    assert argv[-7:] == ["-p", "2222", "-l", "me", "--", "box", "sh -c true"]
    assert not any("StrictHostKeyChecking" in a or "/dev/null" in a for a in argv)


@pytest.mark.slow
def test_deploy_end_to_end_then_reuse_the_cached_engine(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    device = tmp_path / "device"
    target = loopback_target(server, device)
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    lines: list[str] = []
    first = deploy_bundle(bundle, target, tmp_path / "results", echo=lines.append)
    assert first.engine_from_cache is False and first.host == HOST_ALIAS
    assert any(f"verified the sha256 of {len(bundle.manifest['files'])} files" in line for line in lines)
    assert {p.name for p in first.results_dir.iterdir()} >= {"profile.json", "device.json", "run.json", "build.log"}
    assert first.device["python"] and first.device["l4t"] is None  # not a Jetson
    assert leftovers(device) == [] and len(list((device / "engines").iterdir())) == 1

    second = deploy_bundle(bundle, target, tmp_path / "results", echo=lines.append)
    assert second.engine_from_cache is True and second.remote_run_dir != first.remote_run_dir
    assert any("reusing the engine cached" in line for line in lines)
    assert leftovers(device) == [] and len(list((device / "engines").iterdir())) == 1


def test_unknown_host_key_is_refused(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    target = loopback_target(server, tmp_path / "device", ssh_config=server.ssh_config("unknown", known_hosts=empty))
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "host key of spiral-test-device is not in your known_hosts")
    assert empty.read_text() == ""  # and it was not added either
    assert not (tmp_path / "device").exists()


def test_changed_host_key_is_refused(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    pinned = tmp_path / "pinned_known_hosts"
    pinned.write_text(f"[127.0.0.1]:{server.port} {other[0]} {other[1]}\n")
    target = loopback_target(server, tmp_path / "device", ssh_config=server.ssh_config("changed", known_hosts=pinned))
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "host key of spiral-test-device does not match your known_hosts")


def test_refused_key(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    target = loopback_target(server, tmp_path / "device",
                             ssh_config=server.ssh_config("stranger", key=tmp_path / "stranger"))
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, r"spiral-test-device refused the login \(.*Permission denied")


def test_unreachable_host(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    closed = server.ssh_config("closed").read_text().replace(f"Port {server.port}", "Port 1")
    (tmp_path / "closed_config").write_text(closed)
    target = loopback_target(server, tmp_path / "device", ssh_config=tmp_path / "closed_config")
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "cannot reach spiral-test-device: Connection refused")


@pytest.fixture(scope="module")
def large_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 MB of weights: a copy that takes long enough on loopback to be cut in the middle."""
    weights = np.random.default_rng(0).standard_normal((64, 196_608)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "weights"], ["output"])], "large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 196_608])],
        [numpy_helper.from_array(weights, "weights")],
    )
    path = tmp_path_factory.mktemp("large") / "large.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow
def test_connection_killed_during_the_copy(server: SshServer, large_onnx: Path, tmp_path: Path) -> None:
    device = tmp_path / "device"
    target = loopback_target(server, device)
    bundle = build_bundle(large_onnx, target, tmp_path / "bundle")
    full = large_onnx.stat().st_size
    seen: dict[str, int] = {}

    def cut_when_half_there() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            for partial in device.glob("runs/*/model.onnx"):
                size = partial.stat().st_size
                if 0 < size < full:
                    seen["size"] = size
                    seen["killed"] = server.kill_sessions()
                    return
            time.sleep(0.001)

    watcher = threading.Thread(target=cut_when_half_there)
    watcher.start()
    try:
        message = expect_fault(bundle, target, tmp_path, "connection to spiral-test-device was lost while copying the bundle")
    finally:
        watcher.join()
    assert seen and 0 < seen["size"] < full and seen["killed"] >= 1, message
    assert not (device / "engines").exists() or not any((device / "engines").iterdir())


def test_a_copy_cut_off_is_caught_by_the_checksums(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    target = loopback_target(server, tmp_path / "device")
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    model = bundle.root / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])  # what arrives when a transfer stops early
    expect_fault(bundle, target, tmp_path,
                 "bundle on spiral-test-device failed checksum verification: model.onnx does not match its sha256")


def test_missing_trtexec(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    target = loopback_target(server, tmp_path / "device", backend="trtexec", precision="fp16",
                             trtexec={"path": "/usr/src/tensorrt/bin/trtexec"})
    if Path("/usr/src/tensorrt/bin/trtexec").exists():
        pytest.skip("this machine has trtexec at the default path, so it is not missing")
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "spiral-test-device: trtexec not found at /usr/src/tensorrt/bin/trtexec: "
                                           "install TensorRT")


def test_device_python_without_onnxruntime(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # the interpreter without site-packages
    bare.chmod(0o755)
    target = loopback_target(server, tmp_path / "device", remote={"dir": str(tmp_path / "device"), "python": str(bare)})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "cannot import numpy: pip install numpy onnxruntime on the device")


@pytest.mark.slow
def test_a_device_without_onnx_profiles_no_layers_and_says_why(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    """A virtual environment with every package of this one but onnx, which names ONNX Runtime's nodes after the
    model's modules (its interpreter runs the device's build and profile steps too)."""
    venv = tmp_path / "venv-without-onnx"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    for site_dir in map(Path, site.getsitepackages()):
        for entry in site_dir.iterdir():
            if entry.name != "onnx" and not (packages / entry.name).exists():
                (packages / entry.name).symlink_to(entry)
    target = loopback_target(server, tmp_path / "device", remote={"dir": str(tmp_path / "device"), "python": str(python)})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    result = deploy_bundle(bundle, target, tmp_path / "results", echo=lambda line: None)
    profile = read_device_profile(result.profile_path, 0.95)
    assert profile.measurement().stats["p50"] > 0 and profile.measurement().layers is None
    assert "no onnx package (pip install onnx)" in profile.runner_settings["layers"]


def test_device_without_python(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    target = loopback_target(server, tmp_path / "device", remote={"dir": str(tmp_path / "device"),
                                                                  "python": "/nonexistent/python3"})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, r"spiral-test-device: .*/nonexistent/python3.*while running the bundle")


def test_power_mode_expected_on_a_device_without_nvpmodel(server: SshServer, tiny_onnx: Path, tmp_path: Path) -> None:
    if shutil.which("nvpmodel"):
        pytest.skip("this machine has nvpmodel")
    target = loopback_target(server, tmp_path / "device", power={"nvpmodel_id": 0, "nvpmodel_name": "MAXN"})
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "expects an nvpmodel power mode but the device has no nvpmodel")


def test_failed_remote_build(server: SshServer, tmp_path: Path) -> None:
    """An ONNX that parses here but that the device's runtime cannot build (an op it does not know)."""
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["input"], ["output"], domain="com.example")], "unknown-op",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
    )
    model = tmp_path / "unknown_op.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
              str(model))
    device = tmp_path / "device"
    target = loopback_target(server, device)
    bundle = build_bundle(model, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "the engine build on spiral-test-device failed: ONNX Runtime cannot load model.onnx")
    assert not any((device / "engines").iterdir())  # a failed build caches nothing


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB tmpfs; mounting one needs root with CAP_SYS_ADMIN."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a full disk needs a small filesystem and mounting a tmpfs failed here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk(server: SshServer, tiny_onnx: Path, tmp_path: Path, small_disk: Path) -> None:
    (small_disk / "filler").write_bytes(b"\0" * 40_000)
    target = loopback_target(server, small_disk / "device")
    bundle = build_bundle(tiny_onnx, target, tmp_path / "bundle")
    expect_fault(bundle, target, tmp_path, "the disk of spiral-test-device is full .*No space left on device")
