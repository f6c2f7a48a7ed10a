"""``torch-compile``: the PyTorch module compiled by ``torch.compile`` (TorchInductor)."""

from __future__ import annotations

import os
import shutil
from typing import Any

from deploy.backends.base import Backend, Runner
from deploy.backends.inputs import example_feed
from deploy.backends.torch_runner import TorchRunner, prepare_module, torch_availability
from deploy.errors import InputError


class TorchCompileBackend(Backend):
    name = "torch-compile"
    precisions = ("fp32", "fp16", "bf16")
    option_names = ("module", "device", "mode", "dynamic")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        ok, reason = torch_availability()
        if ok and not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
            return False, "torch.compile (inductor) needs a C++ compiler: no g++ or clang++ on PATH and CXX unset"
        return ok, reason

    def load(self) -> Runner:
        self.require_available()
        import torch

        module, device, dtype = prepare_module(self)
        mode = self.options.get("mode", "default")
        dynamic = self.options.get("dynamic")
        try:
            compiled = torch.compile(module, mode=mode, dynamic=dynamic)
        except RuntimeError as exc:  # an unknown mode is reported as RuntimeError
            raise InputError(f"torch.compile rejected mode '{mode}': {exc}") from exc
        settings: dict[str, Any] = {"mode": mode, "dynamic": dynamic, "compiler": "inductor"}
        runner = TorchRunner(compiled, self, device, dtype, settings)
        with runner:  # compile now, so that load() does the expensive part
            runner.infer(example_feed(runner.input_metadata()))
        return runner
