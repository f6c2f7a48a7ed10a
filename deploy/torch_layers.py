"""Where the time goes on the torch targets: ``torch.profiler`` over a few calls after every judged round,
named by module.

As with ONNX Runtime's profiling twin (``spiralprune.deploy.layer_profile``), the profiled calls run between
the judged rounds, never inside them: the profiler (and, eagerly, the hooks that name modules) is on
only around those calls, so a judged call runs exactly as it does without a layer profile. Each
profiled call is one ``record_function`` (``spiral.call``); a layer's time in a call is the sum of the
operators it ran (their wall time on the CPU; on CUDA the device time of the kernels they launched).

**Eager** (``torch``): forward pre- and post-hooks open a ``record_function`` per module call, named
after the module (``layer3.1.conv2``). A module's layer is the operators it runs itself, so a residual
block's add is the block's and not its convolutions'; operators of the root module's own forward are
named after the operator (``flatten``). ``with_modules`` names only TorchScript modules, and
``with_stack`` names Python frames, not module paths: hooks are what names every ``nn.Module``.

**Compiled** (``torch-compile``): dynamo drops ``record_function``s inside a compiled region and
TorchInductor's fused kernels carry no module names, so nothing inside the graph can be named by hooks.
The operators the compiled graph calls out to (``aten::convolution``, ``aten::addmm``) have the input
and weight shapes of one convolution or linear layer (``record_shapes``) and are named after it, in the
order one eager call at the start ran them; the rest of the graph's time (the fused kernels) is one
layer, ``inductor kernels``, fused with no module, and dynamo's and the wrappers' own time is a layer
per profiler event. The explanation says how much time no module is named for, and the coverage
shows what the layers miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spiralprune.deploy.layer_profile import LayerProfile, LayerSampler, LayerTiming, op_kind, per_round

CALL = "spiral.call"
MODULE = "spiral.module:"
GRAPH = "## Call CompiledFxGraph"
FUSED_KERNELS = "inductor kernels"


@dataclass(frozen=True)
class ArithmeticModule:
    """A convolution or linear layer as one eager call ran it: its input and weight shapes and MACs."""

    name: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    macs: int


def arithmetic_modules(module: Any, args: list[Any]) -> list[ArithmeticModule]:
    """The convolutions and linear layers of ``module`` in the order one eager call on ``args`` runs them."""
    import torch
    from torch import nn

    seen: list[ArithmeticModule] = []

    def hook(name: str) -> Any:
        def record(layer: Any, inputs: tuple, output: Any) -> None:
            if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            weight = tuple(layer.weight.shape)
            if isinstance(layer, nn.Linear):
                macs = output.numel() * weight[-1]
            else:  # a transposed convolution's weight reduces over its input's elements
                macs = (inputs[0] if layer.transposed else output).numel() * math.prod(weight[1:])
            seen.append(ArithmeticModule(name, tuple(inputs[0].shape), weight, int(macs)))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _module_records(module: Any) -> list[Any]:
    """Hooks that put every module call of ``module`` in a ``record_function`` named after the module."""
    from torch.autograd.profiler import record_function

    opened: list[Any] = []

    def enter(name: str) -> Any:
        def pre(_module: Any, _args: tuple) -> None:
            record = record_function(MODULE + name)
            record.__enter__()
            opened.append(record)
        return pre

    def leave(_module: Any, _args: tuple, _output: Any) -> None:
        opened.pop().__exit__(None, None, None)

    handles = []
    for name, child in module.named_modules():
        handles += [child.register_forward_pre_hook(enter(name)), child.register_forward_hook(leave)]
    return handles


def _op(event_name: str) -> str:
    """``conv2d`` from ``aten::conv2d``."""
    return event_name.rsplit("::", 1)[-1]


class TorchLayerSampler(LayerSampler):
    """``torch.profiler`` around a few calls of a ``TorchRunner`` after every judged round."""

    def __init__(self, runner: Any, block_calls: int) -> None:
        super().__init__(block_calls)
        self._runner = runner
        self._compiled = runner.forward is not runner.module
        self._device = runner.settings["device"]
        self._arithmetic: list[ArithmeticModule] = []
        self._macs: dict[str, int] = {}  # per module name, over its calls
        self._call_layers: list[dict[str, float]] = []  # per profiled call: layer -> ms
        self._facts: dict[str, dict[str, Any]] = {}

    def start(self, feed: dict[str, np.ndarray], warmup_calls: int = 3) -> None:
        self._arithmetic = arithmetic_modules(self._runner.module, self._runner.arguments(feed))
        for m in self._arithmetic:
            self._macs[m.name] = self._macs.get(m.name, 0) + m.macs
        super().start(feed, warmup_calls)

    def _run(self, count: int, profiled: bool) -> None:
        if not profiled:
            for _ in range(count):
                self._runner.infer(self._feed)
            return
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._device == "cuda" else [])
        # Hooks on a compiled module's submodules would make dynamo recompile the judged graph.
        handles = [] if self._compiled else _module_records(self._runner.module)
        try:
            with profile(activities=activities, record_shapes=self._compiled) as prof:
                for _ in range(count):
                    with record_function(CALL):
                        self._runner.infer(self._feed)
        finally:
            for handle in handles:
                handle.remove()
        calls = sorted((e for e in prof.events() if e.name == CALL), key=lambda e: e.time_range.start)
        if len(calls) != count:
            raise RuntimeError(f"torch.profiler recorded {len(calls)} of {count} profiled calls")
        for call in calls:
            self._call_layers.append(self._compiled_layers(call) if self._compiled else self._eager_layers(call))
            self._call_ms.append(call.time_range.elapsed_us() / 1e3)

    def _ms(self, event: Any) -> float:
        return (event.device_time_total if self._device == "cuda" else event.time_range.elapsed_us()) / 1e3

    def _add(self, times: dict[str, float], name: str, op: str, ms: float, fuses: list[str], fused: bool,
             macs: int | None = None) -> None:
        times[name] = times.get(name, 0.0) + ms
        fact = self._facts.setdefault(name, {"ops": {}, "fuses": fuses, "fused": fused, "macs": macs})
        fact["ops"][op] = fact["ops"].get(op, 0.0) + ms

    def _eager_layers(self, call: Any) -> dict[str, float]:
        times: dict[str, float] = {}

        def visit(event: Any, owner: str | None) -> None:
            for child in event.cpu_children:
                if child.name.startswith(MODULE):
                    visit(child, child.name[len(MODULE):])
                elif owner is None:  # the input and output copies around the module are not the model's
                    visit(child, None)
                else:
                    op = _op(child.name)
                    self._add(times, owner or op, op, self._ms(child), [owner] if owner else [], False,
                              self._macs.get(owner))

        visit(call, None)
        return times

    def _compiled_layers(self, call: Any) -> dict[str, float]:
        unnamed = list(self._arithmetic)
        times: dict[str, float] = {}

        def visit(events: list[Any]) -> None:
            for child in events:
                if child.name.startswith(GRAPH):
                    called = 0.0
                    for op_event in child.cpu_children:
                        op, ms = _op(op_event.name), self._ms(op_event)
                        called += ms
                        module = _matching(op_event, unnamed)
                        if module is None:
                            self._add(times, op, op, ms, [], True)
                        else:
                            unnamed.remove(module)
                            self._add(times, module.name, op, ms, [module.name], False, module.macs)
                    self._add(times, FUSED_KERNELS, "inductor", max(0.0, self._ms(child) - called), [], True)
                else:
                    name = child.name.split(":", 1)[0]  # ``Torch-Compiled Region: 0/0``: the same in every model
                    own = self._ms(child) - sum(self._ms(c) for c in child.cpu_children)
                    self._add(times, name, name, max(0.0, own), [], False)
                    visit(child.cpu_children)

        # dynamo's cache lookup and the compiled region; the input and output copies are not the model's
        visit([child for child in call.cpu_children if child.name.startswith("Torch")])
        return times

    def finish(self) -> LayerProfile:
        runs = [r for r in self._run_rounds if r >= 0]
        calls = [runs.count(i) for i in range(self._rounds)]
        layers = []
        for name, fact in self._facts.items():
            op_type = max(fact["ops"], key=fact["ops"].__getitem__)
            layers.append(LayerTiming(
                name=name, op_type=op_type, kind=op_kind(op_type), provider=self._device,
                rounds_ms=per_round([(r, times.get(name, 0.0)) for r, times in zip(runs, self._call_layers)],
                                    self._rounds),
                nodes=list(fact["ops"]), fuses=fact["fuses"], fused=fact["fused"], macs=fact["macs"],
            ))
        layers.sort(key=lambda layer: -layer.median_ms)
        return LayerProfile("torch.profiler (torch.compile)" if self._compiled else "torch.profiler", calls, layers,
                            per_round(list(zip(runs, self._call_ms)), self._rounds))


def _matching(op_event: Any, modules: list[ArithmeticModule]) -> ArithmeticModule | None:
    """The first of ``modules`` whose input and weight (or its transpose) are among the operator's inputs."""
    shapes = {tuple(s) for s in (op_event.input_shapes or []) if isinstance(s, (list, tuple))}
    for module in modules:
        if module.input_shape in shapes and (module.weight_shape in shapes or module.weight_shape[::-1] in shapes):
            return module
    return None
