"""``torch``: the PyTorch module run eagerly, the reference the compiled backends are judged by."""

from __future__ import annotations

from spiralprune.deploy.backends.base import Backend, Runner
from spiralprune.deploy.backends.torch_runner import TorchRunner, prepare_module, torch_availability


class TorchEagerBackend(Backend):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")
    option_names = ("module", "device", "spin_wait")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return torch_availability()

    def load(self) -> Runner:
        self.require_available()
        module, device, dtype = prepare_module(self)
        return TorchRunner(module, self, device, dtype, {"mode": "eager"})
