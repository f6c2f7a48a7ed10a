"""The native TensorRT backend's per-layer profile (``IProfiler`` on a second context); it needs a GPU host
with TensorRT and is skipped elsewhere with the reason. Its naming is tested on recorded layer names in
tests/deploy/test_tensorrt_layers.py."""

import pytest

from spiralprune.deploy.backends import get_backend
from spiralprune.deploy.profiler import profile_model
from spiralprune.deploy.sampling import ProfileSettings

FAST = ProfileSettings(warmup_s=0.05, block_s=0.02, min_rounds=6, min_duration_s=0.2, max_duration_s=1.0)


def test_iprofiler_layers_line_up_with_the_judged_rounds_and_are_named_by_module(tiny_onnx, tmp_path):
    ok, reason = get_backend("tensorrt").availability()
    if not ok:
        pytest.skip(f"the IProfiler sampler runs a TensorRT engine: {reason}")
    m = profile_model(tiny_onnx, "tensorrt", settings=FAST, cache_dir=tmp_path, layers=True).measurement()
    layers = m.layer_profile()
    assert layers.source == "tensorrt IProfiler" and len(layers.calls_per_round) == len(m.round_sizes)
    assert all(len(layer.rounds_ms) == len(m.round_sizes) for layer in layers.layers)
    assert any(layer.kind == "arithmetic" and layer.fuses for layer in layers.layers)
    assert 0.2 < m.layers["explanation"]["coverage"]["value"] < 5
