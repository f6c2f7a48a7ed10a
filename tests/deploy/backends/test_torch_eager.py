import numpy as np
import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.torch_eager import TorchEagerBackend


def test_runs_the_module_with_the_onnx_signature_and_restores_threads(tiny_onnx, tiny_module):
    before = torch.get_num_threads()
    runner = TorchEagerBackend(tiny_onnx, threads=1, module=tiny_module).load()
    assert runner.input_metadata() == {"input": (["batch", 3, 16, 16], np.dtype(np.float32))}
    assert runner.settings["threads"] == 1 and runner.settings["copies_included"] is False
    x = np.zeros((3, 3, 16, 16), np.float32)
    with runner:
        assert torch.get_num_threads() == 1
        out = runner.infer({"input": x})
    assert torch.get_num_threads() == before
    assert list(out) == ["output"] and out["output"].shape == (3, 10)


def test_bf16_casts_the_module_and_float_inputs(tiny_onnx):
    import copy

    module = copy.deepcopy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 10)))
    runner = TorchEagerBackend(tiny_onnx, precision="bf16", module=module).load()
    with runner:
        out = runner.infer({"input": np.ones((2, 3, 16, 16), np.float32)})
    assert next(module.parameters()).dtype == torch.bfloat16
    assert out["output"].dtype == np.float32 and out["output"].shape == (2, 10)


def test_needs_a_module_and_a_known_device(tiny_onnx, tiny_module):
    with pytest.raises(InputError, match="pass the nn.Module as option module="):
        TorchEagerBackend(tiny_onnx).load()
    with pytest.raises(InputError, match="device must be 'cpu' or 'cuda'"):
        TorchEagerBackend(tiny_onnx, module=tiny_module, device="tpu").load()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="torch sees no CUDA GPU"):
            TorchEagerBackend(tiny_onnx, module=tiny_module, device="cuda").load()


def test_output_count_must_match_the_onnx(tiny_onnx):
    class Two(torch.nn.Module):
        def forward(self, x):
            return x, x

    runner = TorchEagerBackend(tiny_onnx, module=Two()).load()
    with runner, pytest.raises(InputError, match="returned 2 outputs but its ONNX export has 1"):
        runner.infer({"input": np.zeros((1, 3, 16, 16), np.float32)})


def test_spin_wait_needs_cuda_and_on_cuda_polls_the_end_event(tiny_onnx, tiny_module):
    """trtexec's --useSpinWait: the host polls each call's end event instead of sleeping in synchronize."""
    with pytest.raises(InputError, match="option spin_wait waits on a CUDA event: it needs device 'cuda'"):
        TorchEagerBackend(tiny_onnx, module=tiny_module, spin_wait=True).load()
    runner = TorchEagerBackend(tiny_onnx, module=tiny_module).load()
    assert "wait" not in runner.settings and "gpu_clocks_mhz" not in runner.settings  # CPU: perf_counter
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch: the CUDA half of this test runs on a GPU host")
    for spin, wait in ((True, "spin"), (False, "synchronize")):
        runner = TorchEagerBackend(tiny_onnx, module=tiny_module, device="cuda", spin_wait=spin).load()
        assert runner.settings["wait"] == wait and runner.settings["timer"] == "cuda-events"
        assert "gpu_clocks_mhz" in runner.settings
        with runner:
            out = runner.infer({"input": np.zeros((2, 3, 16, 16), np.float32)})
        assert out["output"].shape == (2, 10) and runner.last_inference_time() > 0
