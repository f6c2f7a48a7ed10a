"""``deploy/device_runner/manifest.py``: checksum verification of bundles built by ``spiralprune.deploy.bundle``."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.deploy.bundle import build_bundle
from spiralprune.deploy.device_runner.errors import DeviceError
from spiralprune.deploy.device_runner.manifest import verify_bundle
from tests.deploy.device_runner.runner_bundles import cpu_target


def test_verify_intact_bundle(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    assert verify_bundle(bundle.root, bundle.manifest_sha256)["engine_key"] == bundle.engine_key


def test_a_truncated_model_fails_verification(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    model = bundle.root / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(DeviceError, match="model.onnx does not match its sha256: the copy was cut off") as info:
        verify_bundle(bundle.root, bundle.manifest_sha256)
    assert info.value.kind == "checksum"


def test_a_missing_file_or_other_manifest_fails_verification(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    with pytest.raises(DeviceError, match="manifest.json is missing or differs"):
        verify_bundle(bundle.root, "0" * 64)
    (bundle.root / "runner/spiralprune/deploy/stats.py").unlink()
    with pytest.raises(DeviceError, match="runner/spiralprune/deploy/stats.py is missing"):
        verify_bundle(bundle.root, bundle.manifest_sha256)


def test_a_missing_module_of_the_runner_fails_verification(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, cpu_target(), tmp_path / "b")
    (bundle.root / "runner/spiralprune/deploy/device_runner/power.py").unlink()
    with pytest.raises(DeviceError, match="runner/spiralprune/deploy/device_runner/power.py is missing"):
        verify_bundle(bundle.root, bundle.manifest_sha256)
