"""Every registered backend: available ones run a tiny real model, unavailable ones say why."""

import numpy as np
import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import BACKENDS, Backend, TraceRunner, get_backend, list_backends


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(InputError, match="unknown backend 'nope'; known: .*ort-cpu"):
        get_backend("nope")


def test_every_backend_reports_availability_with_a_reason_when_unavailable():
    rows = list_backends()
    assert [name for name, _, _ in rows] == list(BACKENDS)
    for name, ok, reason in rows:
        assert issubclass(get_backend(name), Backend)
        assert ok or reason, f"{name} is unavailable without a reason"


def _params():
    # torch.compile's first compile takes 5-25 s on two cores.
    return [pytest.param(n, marks=pytest.mark.slow) if n == "torch-compile" else n for n in BACKENDS]


@pytest.mark.parametrize("name", _params())
def test_backend_runs_the_tiny_model(name, tiny_onnx, tiny_module, tmp_path):
    backend = get_backend(name)
    ok, reason = backend.availability()
    if not ok:
        pytest.skip(f"{name}: {reason}")
    options = {"module": tiny_module} if "module" in backend.option_names else {}
    runner = backend(tiny_onnx, cache_dir=tmp_path, **options).load()
    shape, dtype = runner.input_metadata()["input"]
    assert shape[1:] == [3, 16, 16] and dtype == np.float32
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with runner:
        if isinstance(runner, TraceRunner):
            trace = runner.trace({"input": x}, warmup_s=0.05, duration_s=1, iterations=20)
            assert len(trace.samples_ms) >= 20 and min(trace.samples_ms) > 0
            return
        out = runner.infer({"input": x})
        assert runner.last_inference_time() > 0
    with torch.no_grad():
        expected = tiny_module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out["output"], expected, rtol=1e-3, atol=1e-4)
