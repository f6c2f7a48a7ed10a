"""``deploy/device_runner/results.py``: reading trtexec's results (the trtexec backend's parser, on its real
transcript) and the profile's fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spiralprune.deploy.device_runner.errors import DeviceError
from spiralprune.deploy.device_runner.results import measurement, profile_json, read_trace
from spiralprune.deploy.layer_profile import LayerProfile
from tests.deploy.device_runner.runner_bundles import FIXTURES


def test_read_trace_of_trtexec(tmp_path: Path) -> None:
    # The --exportTimes file is built here in the format of TensorRT's sampleReporting.cpp
    # (tests/fixtures/trtexec/README.md: no real one is public).
    output = (FIXTURES / "trtexec" / "trtexec-10.16.0-model-trained.log").read_text()
    records = [{"startComputeMs": i, "computeMs": 0.03 + i * 1e-4, "latencyMs": 0.04 + i * 1e-4}
               for i in range(3349 + 5)]
    times = tmp_path / "times.json"
    times.write_text(json.dumps(records))
    trace = read_trace({"backend": "trtexec", "profile_settings": {"block_calls": 2}}, output, times,
                       *layer_files(tmp_path))
    assert trace["warmup_iterations"] == 3349 and trace["warmup_s"] == pytest.approx(0.2)
    assert trace["samples_ms"] == pytest.approx([0.03 + i * 1e-4 for i in range(3349, 3354)])
    assert trace["round_sizes"] == [2, 2, 1]  # trtexec's back-to-back queries, in rounds of block_calls
    assert trace["runner_settings"]["throughput_qps"] == 18392.0
    # the layers of trtexec's separate profiling run, named by module, explained against the timed rounds
    m = measurement(1, {"input": [1, 3, 32, 32]}, trace, {"cv_threshold": 0.1, "confidence": 0.95})
    layers = LayerProfile.from_dict(m["layers"])
    assert layers.source == "trtexec" and layers.calls_per_round == [2712] and "layer1.0.conv2" in layers.by_name()
    assert m["layers"]["explanation"]["end_to_end_ms"] == pytest.approx(m["stats"]["p50"], rel=0.01)


def layer_files(folder: Path) -> tuple[Path, Path]:
    """trtexec's --exportProfile and --exportLayerInfo files (tests/fixtures/trtexec/README.md)."""
    layers, info = folder / "layers.json", folder / "layer-info.json"
    shutil.copyfile(FIXTURES / "trtexec" / "resnetlike-export-profile.json", layers)
    shutil.copyfile(FIXTURES / "trtexec" / "resnetlike-layer-info.json", info)
    return layers, info


def test_read_trace_of_broken_trtexec_output(tmp_path: Path) -> None:
    (tmp_path / "times.json").write_text("[]")
    with pytest.raises(DeviceError, match="cannot read the trtexec results") as info:
        read_trace({"backend": "trtexec"}, "no summary here", tmp_path / "times.json", *layer_files(tmp_path))
    assert info.value.kind == "profile-failed"


def test_read_trace_without_trtexecs_layer_profile(tmp_path: Path) -> None:
    output = (FIXTURES / "trtexec" / "trtexec-10.16.0-model-trained.log").read_text()
    (tmp_path / "times.json").write_text(json.dumps([{"computeMs": 0.03}] * 3400))
    with pytest.raises(DeviceError, match="cannot read the trtexec results: .*layers.json") as info:
        read_trace({"backend": "trtexec", "profile_settings": {"block_calls": 2}}, output, tmp_path / "times.json",
                   tmp_path / "layers.json", tmp_path / "layer-info.json")
    assert info.value.kind == "profile-failed"


@pytest.mark.parametrize("physical", [2, None])
def test_the_fingerprint_records_logical_cores_as_logical(physical: int | None) -> None:
    manifest = {"backend": "ort-cpu", "target": {"precision": "fp32"}, "profile_settings": {"seed": 0},
                "model": {"file": "model.onnx", "sha256": "0" * 64, "inputs": "random"}}
    facts = {"cpu": "x", "machine": "aarch64", "logical_cores": 4, "physical_cores": physical, "os": "Linux",
             "python": "3.8.10", "model": None, "numpy": "1.24.4"}
    fingerprint = profile_json(manifest, facts, {"threads": 4}, {})["fingerprint"]
    assert fingerprint["logical_cores"] == 4 and fingerprint["physical_cores"] == physical
