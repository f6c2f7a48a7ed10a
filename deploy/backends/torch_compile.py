"""``torch-compile``: the PyTorch module compiled by ``torch.compile`` (TorchInductor)."""

from __future__ import annotations

import os
import shutil
from typing import Any

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import Backend, Runner
from spiralprune.deploy.backends.inputs import example_feed
from spiralprune.deploy.backends.torch_runner import TorchRunner, prepare_module, torch_availability

RECOMPILE_LIMIT = 256


class TorchCompileBackend(Backend):
    name = "torch-compile"
    precisions = ("fp32", "fp16", "bf16")
    option_names = ("module", "device", "mode", "dynamic", "spin_wait")

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
        # Every pruned candidate is a new graph for the same forward code: past dynamo's default
        # recompile limit (8) torch would silently run the rest eagerly and time the wrong thing, so
        # the limit is raised, and reaching it is an error instead.
        dynamo = torch._dynamo.config
        dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
        dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, RECOMPILE_LIMIT)
        dynamo.fail_on_recompile_limit_hit = True
        mode = self.options.get("mode", "default")
        dynamic = self.options.get("dynamic")
        try:
            compiled = torch.compile(module, mode=mode, dynamic=dynamic)
        except RuntimeError as exc:  # an unknown mode is reported as RuntimeError
            raise InputError(f"torch.compile rejected mode '{mode}': {exc}") from exc
        settings: dict[str, Any] = {"mode": mode, "dynamic": dynamic, "compiler": "inductor"}
        runner = TorchRunner(module, self, device, dtype, settings, forward=compiled)
        with runner:  # compile now, so that load() does the expensive part
            runner.infer(example_feed(runner.input_metadata()))
        return runner
