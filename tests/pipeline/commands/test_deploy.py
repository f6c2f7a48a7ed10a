"""``spiralprune deploy`` end to end against the loopback OpenSSH server (tests/deploy/sshd.py), gate included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from size_limits import IMPOSSIBLE_SIZE, size_failures
from tiny_onnx import conv_net

from spiralprune.pipeline.cli import main
from spiralprune.pipeline.compare.releases import load_release
from tests.deploy.sshd import HOST_ALIAS, SshServer, loopback_target_data, server  # noqa: F401 - server is a fixture


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv, ReLU, global average pool and a linear layer on [batch, 3, 16, 16] -> [batch, 10]."""
    return conv_net(tmp_path_factory.mktemp("model") / "tiny.onnx", "batch")


def write_target(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_deploy_gates_on_the_device_and_reuses_its_engine(
    server: SshServer, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = loopback_target_data(server, tmp_path / "device")
    data["ssh"]["host"] = "placeholder-replaced-by-host"
    target = write_target(tmp_path / "loopback.yaml", data)
    out, report = tmp_path / "out", tmp_path / "report.json"
    argv = ["deploy", str(tiny_onnx), "--target", str(target), "--host", HOST_ALIAS, "--out", str(out), "--json", str(report)]

    assert main(argv) == 0
    first = capsys.readouterr().out
    assert f"deploying to loopback-cpu at {HOST_ALIAS}" in first
    assert "engine: built on the device" in first
    assert "PASS latency.p50.max_ms" in first and "candidate: p50 " in first and "robust cv" in first
    assert first.rstrip().endswith(f"spiralprune deploy to loopback-cpu ({HOST_ALIAS}) passed")
    saved = json.loads(report.read_text())
    assert saved == json.loads((out / "deploy.json").read_text())
    assert saved["passed"] is True and saved["deploy"]["engine_from_cache"] is False
    assert saved["deploy"]["device"]["python"] and saved["deploy"]["manifest_sha256"]
    assert saved["profile"]["measurements"][0]["samples_ms"]
    assert load_release(report).profile.stat("p50") == saved["profile"]["measurements"][0]["stats"]["p50"]
    assert (out / "bundle" / "manifest.json").is_file() and (out / "results" / "profile.json").is_file()
    assert not any((tmp_path / "device" / "runs").iterdir())
    # the device profiled its layers (ONNX Runtime's twin session there): where its time goes
    device = saved["layers"]["device"]
    assert device["source"] == "onnxruntime" and device["layers"] and saved["layers"]["host"] is None
    assert "where the device's time goes: onnxruntime per-layer profile over" in first
    assert "device share" in first and "host share" not in first

    markdown, html = tmp_path / "deploy.md", tmp_path / "deploy.html"
    assert main([*argv, "--explain", "--markdown", str(markdown), "--html", str(html)]) == 0
    second = capsys.readouterr().out
    assert "engine: reused from the device cache" in second
    saved = json.loads(report.read_text())
    assert saved["deploy"]["engine_from_cache"] is True
    # the same layers measured on this host, beside the device's
    host = saved["layers"]["host"]
    assert host["source"] == "onnxruntime" and {r["name"] for r in host["layers"]} == {r["name"] for r in device["layers"]}
    assert "on this host: onnxruntime per-layer profile" in second and "host share" in second
    # the same in the Markdown (a pull-request comment) and HTML reports, under the gate's checks
    md = markdown.read_text()
    assert md.startswith("## spiralprune gate PASSED") and "PASS" in md and "### Where the device's time goes" in md
    assert "On this host: onnxruntime per-layer profile" in md and "| device ms | device share | host ms |" in md
    page = html.read_text()
    assert "<h2>Where the device's time goes</h2>" in page and "host share" in page


@pytest.mark.slow
def test_a_budget_the_device_misses_fails_the_gate(
    server: SshServer, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Latency on the device's rounds, and every size limit (tests/size_limits.py) on the shipped file."""
    data = loopback_target_data(server, tmp_path / "device")
    data["budget"]["latency"]["max_ms"] = 1e-6
    data["budget"]["size"] = IMPOSSIBLE_SIZE
    target = write_target(tmp_path / "tight.yaml", data)
    out = tmp_path / "out"
    assert main(["deploy", str(tiny_onnx), "--target", str(target), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    checks = 1 + len(IMPOSSIBLE_SIZE)
    assert "FAIL latency.p50.max_ms" in printed and f"failed: {checks} of {checks} checks did not pass" in printed
    assert len(size_failures(json.loads((out / "deploy.json").read_text())["checks"])) == len(IMPOSSIBLE_SIZE)


def test_a_fault_is_one_line_and_exit_2(
    server: SshServer, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    config = server.ssh_config("stranger", key=tmp_path / "stranger")
    target = write_target(tmp_path / "t.yaml", loopback_target_data(server, tmp_path / "device", ssh_config=config))
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    (out / "results" / "profile.json").write_text("{}")
    (out / "deploy.json").write_text('{"passed": true}')  # an earlier deploy's outcome
    assert main(["deploy", str(tiny_onnx), "--target", str(target), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("spiralprune: error: spiral-test-device refused the login")
    assert "passed" not in captured.out and not (out / "results").exists() and not (out / "deploy.json").exists()


def test_a_target_without_host_needs_one(tiny_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(tiny_onnx), "--target", "jetson"]) == 2
    assert "target 'jetson-orin-nano' names no host: pass --host HOST" in capsys.readouterr().err
