"""What a device sends back, and what a bundle manifest names, is data: it lands only where spiral puts it.

A ``profile.json``'s layer profile is checked field by field and explained again on the host
(``spiralprune.deploy.remote.read_device_profile``): a malformed one is one line, a forged explanation is replaced.

The device's ``results/`` tar is unpacked with ``spiralprune.deploy.remote._extract_results`` (what ``spiral
deploy`` calls after the device ran); whatever names it holds, only plain files under ``results/``
reach the results folder, and anything else is one InputError line with nothing written outside.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy import device_runner
from spiralprune.deploy.profiler import profile_model
from spiralprune.deploy.remote import _extract_results, read_device_profile
from spiralprune.deploy.sampling import ProfileSettings


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data.seek(0)
    return data


def _file(name: str, content: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


CRAFTED: dict[str, tuple[Callable[[], io.BytesIO], str]] = {
    "dotdot": (lambda: _tar(_file("results/profile.json"), _file("results/../../escaped")),
               "the device sent results spiral does not unpack: 'results/../../escaped' would be extracted to "),
    "absolute": (lambda: _tar(_file("results/profile.json"), _file("/tmp/escaped")),
                 "the device sent results spiral does not unpack: '/tmp/escaped' is not a plain file under results/"),
    "symlink": (lambda: _tar(_link("results/profile.json", "/etc/passwd")),
                "the device sent results spiral does not unpack: 'results/profile.json' is not a plain file under "
                "results/"),
    "hardlink": (lambda: _tar(_link("results/profile.json", "results/x", tarfile.LNKTYPE)),
                 "the device sent results spiral does not unpack: 'results/profile.json' is not a plain file under "
                 "results/"),
    "outside-results": (lambda: _tar(_file("results/profile.json"), _file("bundle/manifest.json")),
                        "the device sent results spiral does not unpack: 'bundle/manifest.json' is not a plain file "
                        "under results/"),
    "truncated": (lambda: io.BytesIO(_tar(_file("results/profile.json", b"x" * 4096)).getvalue()[:1000]),
                  "the device sent results spiral does not unpack: "),
    "no-profile": (lambda: _tar(_file("results/run.json")), "the device sent results without a profile.json"),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_device_results_are_refused(kind: str, tmp_path: Path) -> None:
    make, message = CRAFTED[kind]
    out = tmp_path / "deploy"
    with pytest.raises(InputError) as info:
        _extract_results(make(), out / "results")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deploy"]  # nothing unpacked, nothing left behind


def test_plain_results_land_in_the_results_folder(tmp_path: Path) -> None:
    _extract_results(_tar(_file("results/profile.json", b'{"a": 1}'), _file("results/logs/build.log", b"ok")),
                     tmp_path / "results")
    assert (tmp_path / "results" / "profile.json").read_bytes() == b'{"a": 1}'
    assert (tmp_path / "results" / "logs" / "build.log").read_bytes() == b"ok"


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "linked/outside.txt"])
def test_a_bundle_manifest_cannot_name_a_file_outside_the_bundle(name: str, tmp_path: Path) -> None:
    bundle, outside = tmp_path / "bundle", tmp_path / "outside.txt"
    bundle.mkdir()
    outside.write_text("not the bundle's")
    (bundle / "linked").symlink_to(tmp_path)
    data = json.dumps({"files": {name: sha256_file(outside)}}).encode()
    (bundle / device_runner.MANIFEST).write_bytes(data)
    with pytest.raises(device_runner.DeviceError, match=f"^{name!r} points outside the bundle$") as info:
        device_runner.verify_bundle(bundle, hashlib.sha256(data).hexdigest())
    assert info.value.kind == "checksum"


@pytest.fixture(scope="module")
def device_profile(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real profile with ONNX Runtime's layers, as a device's ``profile.json`` carries it."""
    settings = ProfileSettings(warmup_s=0.02, block_s=0.02, min_rounds=4, min_duration_s=0.1, max_duration_s=0.4)
    return profile_model(tiny_onnx, "ort-cpu", settings=settings, layers=True).to_dict()


def _sent(profile: dict, folder: Path) -> Path:
    path = folder / "profile.json"
    path.write_text(json.dumps(profile))
    return path


LAYER_FAULTS: dict[str, Callable[[dict], None]] = {
    "not-a-mapping": lambda layers: layers.update(layers=["x"]),
    "negative-time": lambda layers: layers["layers"][0].update(rounds_ms=[-1.0] * len(layers["calls_per_round"])),
    "a-round-missing": lambda layers: layers["layers"][0]["rounds_ms"].pop(),
    "unknown-kind": lambda layers: layers["layers"][0].update(kind="magic"),
    "extra-field": lambda layers: layers["layers"][0].update(command="rm -rf /"),
    "string-calls": lambda layers: layers.update(calls_per_round="many"),
}


@pytest.mark.parametrize("fault", LAYER_FAULTS)
def test_a_malformed_layer_profile_from_the_device_is_one_line(fault: str, device_profile: dict, tmp_path: Path) -> None:
    profile = copy.deepcopy(device_profile)
    LAYER_FAULTS[fault](profile["measurements"][0]["layers"])
    with pytest.raises(InputError, match="^the device sent a profile.json with a malformed layer profile: ") as info:
        read_device_profile(_sent(profile, tmp_path), 0.95)
    assert "\n" not in str(info.value)


def test_the_devices_explanation_is_recomputed_from_its_layers(device_profile: dict, tmp_path: Path) -> None:
    profile = copy.deepcopy(device_profile)
    honest = profile["measurements"][0]["layers"]["explanation"]
    profile["measurements"][0]["layers"]["explanation"] = {"coverage": {"value": 99.0}, "findings": ["all is well"]}
    explanation = read_device_profile(_sent(profile, tmp_path), 0.95).measurement().layers["explanation"]
    assert explanation["coverage"] == honest["coverage"] and explanation["findings"] == honest["findings"]
