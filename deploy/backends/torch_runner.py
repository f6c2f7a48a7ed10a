"""What the torch backends share: option checks, and a runner that times ``module(*inputs)``.

There is no torch model file format that is safe to load (pickles run code), so the torch backends
take the live ``nn.Module`` as the option ``module=``; ``model_path`` is the ONNX export of that
same module, which gives the input names, shapes and dtypes, the output names, and the model's
identity (its sha256) in the profile.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import Backend, InputMetadata, Runner
from spiralprune.deploy.backends.onnx_io import read_onnx_io
from spiralprune.deploy.fingerprint import gpu_clocks, physical_cores

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_availability() -> tuple[bool, str]:
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed (pip install torch)"
    return True, ""


def prepare_module(backend: Backend) -> tuple[Any, str, Any]:
    """(module on its device in eval mode and precision, device, torch dtype) from the options."""
    import torch

    module = backend.options.get("module")
    if not isinstance(module, torch.nn.Module):
        raise InputError(
            f"backend '{backend.name}' runs a live torch module: pass the nn.Module as option module= "
            f"(and {backend.model_path.name} as its ONNX export)"
        )
    device = backend.options.get("device", "cpu")
    if device not in ("cpu", "cuda"):
        raise InputError(f"backend '{backend.name}' device must be 'cpu' or 'cuda', got '{device}'")
    if backend.options.get("spin_wait") and device != "cuda":
        raise InputError(f"backend '{backend.name}' option spin_wait waits on a CUDA event: it needs device 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"backend '{backend.name}' was asked for device 'cuda' but torch sees no CUDA GPU")
    dtype = getattr(torch, _DTYPES[backend.precision])
    return module.eval().to(device=device, dtype=dtype), device, dtype


class TorchRunner(Runner):
    """Inputs are moved to the device before the clock starts and outputs back after it stops;
    on CUDA the clock is a pair of CUDA events around the forward pass, and the host waits for the
    end event either in CUDA's synchronize or, with the option ``spin_wait``, by polling it (as
    trtexec's ``--useSpinWait``: a host thread that never sleeps launches the next call at once, where
    a woken one can add its wake-up to a launch-bound model's time). The GPU's clocks when the
    runner was made are recorded in its settings (None without NVML).

    ``module`` is the eager module and ``forward`` what is timed (the module, or its compiled form);
    ``spiralprune.deploy.torch_layers`` profiles calls of ``forward`` and names what it finds after ``module``'s
    submodules."""

    def __init__(self, module: Any, backend: Backend, device: str, dtype: Any, settings: dict[str, Any],
                 forward: Any = None) -> None:
        import torch

        super().__init__()
        self.module = module
        self.forward = module if forward is None else forward
        self._device = device
        self._dtype = dtype
        self._inputs, self._outputs = read_onnx_io(backend.model_path)
        self._threads = backend.threads or physical_cores()
        self._saved_threads = torch.get_num_threads()
        self._last_s = float("nan")
        self._spin = bool(backend.options.get("spin_wait", False))
        cuda = device == "cuda"
        self.settings = {
            "threads": self._threads,
            "device": device,
            "precision": backend.precision,
            "inference_mode": True,
            "copies_included": False,
            "timer": "cuda-events" if cuda else "perf_counter",
            **({"wait": "spin" if self._spin else "synchronize", "gpu_clocks_mhz": gpu_clocks()} if cuda else {}),
            "torch": torch.__version__,
            **settings,
        }

    def activate(self) -> None:
        import torch

        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        super().activate()

    def deactivate(self) -> None:
        import torch

        torch.set_num_threads(self._saved_threads)
        super().deactivate()

    def arguments(self, feed: dict[str, np.ndarray]) -> list[Any]:
        """``feed`` as the module's positional tensors, on its device and in its precision."""
        import torch

        args = []
        for name in self._inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(feed[name])).to(self._device)
            args.append(tensor.to(self._dtype) if tensor.is_floating_point() else tensor)
        return args

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = self.arguments(feed)
        with torch.inference_mode():
            if self._device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                result = self.forward(*args)
                end.record()
                if self._spin:
                    while not end.query():
                        pass
                else:
                    end.synchronize()
                self._last_s = start.elapsed_time(end) / 1e3
            else:
                begin = time.perf_counter()
                result = self.forward(*args)
                self._last_s = time.perf_counter() - begin
        return self._name_outputs(result)

    def _name_outputs(self, result: Any) -> dict[str, np.ndarray]:
        if isinstance(result, dict):
            tensors = list(result.values())
        elif isinstance(result, (tuple, list)):
            tensors = list(result)
        else:
            tensors = [result]
        if len(tensors) != len(self._outputs):
            raise InputError(
                f"the module returned {len(tensors)} outputs but its ONNX export has {len(self._outputs)}"
            )
        return {name: t.detach().float().cpu().numpy() for name, t in zip(self._outputs, tensors)}

    def last_inference_time(self) -> float:
        return self._last_s

    def input_metadata(self) -> InputMetadata:
        return self._inputs
