"""Where the time goes: per-layer latency from ONNX Runtime's node profiling, named by PyTorch module.

**Measured beside the judged rounds, never inside them.** A second ONNX Runtime session of the same
model, with the same options plus ``enable_profiling``, runs a few calls after every round of
``spiralprune.deploy.sampling`` (``LayerSampler.after_round``); the judged session is never profiled, so a
verdict is the same with or without a layer profile. Each round's profiled calls give every layer a
per-round value (the median over those calls), aligned with the judged rounds: a layer's share (its
part of its own profiled call, which runs slower than a judged one: ``_judged``) and its time (that
share of the round's end-to-end time), and a layer's change between two models measured paired, get an
interval over the same rounds as the verdict (``explain``, ``attribute_change``). The profiled calls take at
most ``PROFILE_SHARE`` of a round's judged time (at least one call, at most ``block_calls``). The
twin's threads do not spin after a call: ONNX Runtime's intra-op threads otherwise spin on for a
while and slow the judged block after them. Measured on the 2-core development machine, ResNet-18
layout at width 48, loaded by another process: with spinning the twin's operators summed to 1.19x
the judged median; without, 0.95x.

**Names.** The torch exporter names a node by its module scope (``/layer3/layer3.1/conv2/Conv``), so
the module path (``layer3.1.conv2``) is recoverable (``module_path``). ONNX Runtime's graph
optimizations fuse nodes and rename them after a tensor (``/layer1/layer1.0/relu/Relu_output_0_nchwc``,
a convolution fused with the ReLU after it); such a name is traced back through the original graph
to the operator that computes it and the modules it fuses (``NodeNames``). What cannot be traced
(``ReorderOutput``) keeps ONNX Runtime's name and is marked fused.

**MACs** of a node are computed from the shapes ONNX Runtime recorded (output elements x the weight's
reduction size), enough to say whether time tracks arithmetic or is a fixed cost per call.

``LayerSampler`` is the one interface of every backend's sampler (``spiralprune.deploy.profiler.layer_sampler``
picks it): ONNX Runtime's twin here, ``torch.profiler`` on the torch targets in
``spiralprune.deploy.torch_layers``, TensorRT's ``IProfiler`` in ``spiralprune.deploy.backends.tensorrt_native``
(trtexec profiles in its own run; ``spiralprune.deploy.tensorrt_layers`` names TensorRT's layers);
``explain`` and ``attribute_change`` read any of their profiles. The device runner ships this module: onnx
is imported only to name ONNX Runtime's nodes.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.stats import median_ci

# The share of a round's judged time that its profiled calls may take (the bound: 20 %).
PROFILE_SHARE = 0.1
# Rounds profiled whatever they cost (``LayerSampler.after_round``): an interval over fewer says little.
MIN_PROFILED_ROUNDS = 6
LAYER_BACKENDS = ("ort-cpu", "torch", "torch-compile", "tensorrt", "trtexec")
# ONNX Runtime's profiler times a node on the host: on the CUDA provider that is the launch of its kernels,
# not their run (microsoft/onnxruntime issues 7390 and 20398; the kernels' own times come only from a build
# with --enable_cuda_profiling, pull request 8406), and the TensorRT provider runs its whole subgraph as one
# node (``TensorrtExecutionProvider_TRTKernel_graph_…_kernel_time``, pull request 9567).
NO_LAYERS = {
    "ort-cuda": "ONNX Runtime's node profiling times CUDA kernels' launches on the host, not their run on the GPU",
    "ort-trt": "ONNX Runtime's node profiling times the TensorRT subgraph as one node "
               "(TensorrtExecutionProvider_TRTKernel_graph_…), which names no layer; profile the model with "
               "'tensorrt' or 'trtexec' for its layers",
}

ARITHMETIC = frozenset({
    "Conv", "FusedConv", "ConvTranspose", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "LSTM", "GRU", "RNN",
    "Attention", "MultiHeadAttention", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM", "NhwcFusedConv",
    # torch's operators (``spiralprune.deploy.torch_layers`` names a layer by its aten op, namespace dropped)
    "conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "addmm", "mm", "bmm", "matmul", "lstm", "gru", "scaled_dot_product_attention",
    "_native_multi_head_attention", "mkldnn_convolution", "_convolution_pointwise",
})
LAYOUT = frozenset({
    "Transpose", "Reshape", "ReorderInput", "ReorderOutput", "Cast", "Concat", "Slice", "Split", "Squeeze",
    "Unsqueeze", "Flatten", "Expand", "Gather", "Pad", "Tile", "Identity", "DepthToSpace", "SpaceToDepth",
    "Reformat",  # TensorRT's reformatting copies between layouts or precisions
    "flatten", "view", "reshape", "permute", "transpose", "contiguous", "cat", "clone", "copy_", "_to_copy",
    "expand", "slice", "split", "chunk", "squeeze", "unsqueeze", "constant_pad_nd", "pixel_shuffle",
})
QUANTIZE = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
TRANSFER = frozenset({"MemcpyToHost", "MemcpyFromHost"})
# Arithmetic operators that compute in integers: an INT8 model's quantized nodes.
QUANTIZED = frozenset({
    "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM",
})
KINDS = ("arithmetic", "layout", "quantize", "transfer", "other")


def op_kind(op_type: str) -> str:
    """``arithmetic`` (time should track MACs), ``layout`` (memory and layout conversions),
    ``quantize`` (quantize / dequantize), ``transfer`` (copies between devices) or ``other``."""
    for kind, ops in (("arithmetic", ARITHMETIC), ("layout", LAYOUT), ("quantize", QUANTIZE), ("transfer", TRANSFER)):
        if op_type in ops:
            return kind
    return "other"


def module_path(node_name: str) -> str | None:
    """``layer3.1.conv2`` from the torch exporter's ``/layer3/layer3.1/conv2/Conv``; ``""`` for a node of
    the root module (``/Flatten``); None for a name that is not a module scope."""
    if not node_name.startswith("/"):
        return None
    path = ""
    for part in node_name.split("/")[1:-1]:
        # A child of a Sequential or ModuleList is scoped by its full name (``layer3.1`` under ``layer3``).
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


@dataclass(frozen=True)
class Located:
    """Where a node of the optimized graph came from: its layer's name, the modules it fuses, and
    whether it is fused (renamed by an optimization, or not traced to one module)."""

    name: str
    fuses: tuple[str, ...]
    fused: bool


class NodeNames:
    """Maps ONNX Runtime's node names back to the original graph's modules (see the module docstring)."""

    def __init__(self, model_path: Path) -> None:
        import onnx

        try:
            graph = onnx.load(str(model_path), load_external_data=False).graph
        except Exception as exc:  # a DecodeError or OSError: the file is not an ONNX model
            raise InputError(f"cannot read ONNX model {model_path}: {exc}") from exc
        self.nodes = {node.name: node for node in graph.node if node.name}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.initializers = {t.name for t in graph.initializer}

    def locate(self, ort_name: str, op_type: str) -> Located:
        node, renamed = self._original(ort_name)
        if node is None:
            return Located(ort_name, (), True)
        chain = [node]
        if op_type in ARITHMETIC and node.op_type not in ARITHMETIC:
            chain = self._up_to_arithmetic(node)
        modules = [m for m in (module_path(n.name) for n in reversed(chain)) if m is not None]
        name = modules[0] if modules and modules[0] else node.name
        fuses = tuple(dict.fromkeys(m for m in modules if m))
        return Located(name, fuses, renamed or len(chain) > 1)

    def _original(self, ort_name: str) -> tuple[Any, bool]:
        """The original node ``ort_name`` stands for, and whether ONNX Runtime renamed it."""
        if ort_name in self.nodes:
            return self.nodes[ort_name], False
        candidate = ort_name
        for _ in range(3):  # optimizers append suffixes such as ``_nchwc`` to a tensor or node name
            if candidate in self.producers:
                return self.producers[candidate], True
            if candidate in self.nodes:
                return self.nodes[candidate], True
            if "_" not in candidate:
                break
            candidate = candidate.rsplit("_", 1)[0]
        return None, True

    def _up_to_arithmetic(self, node: Any) -> list[Any]:
        """``node`` and the nodes above it up to the arithmetic operator it was fused into (at most 4)."""
        chain = [node]
        for _ in range(4):
            inputs = [self.producers[i] for i in chain[-1].input if i in self.producers and i not in self.initializers]
            if not inputs:
                break
            chain.append(inputs[0])
            if inputs[0].op_type in ARITHMETIC:
                return chain
        return [node]


@dataclass
class LayerTiming:
    """One layer: the nodes ONNX Runtime (or TensorRT) ran for it and their time per round, in ms."""

    name: str
    op_type: str
    kind: str
    provider: str
    rounds_ms: list[float]
    nodes: list[str] = field(default_factory=list)
    fuses: list[str] = field(default_factory=list)
    fused: bool = False
    macs: int | None = None
    # What an arithmetic layer computes in where the backend says (TensorRT's layer information: ``int8``,
    # ``fp16``, ``fp32``); ONNX Runtime says it by the operator (``QLinearConv``: ``QUANTIZED``).
    precision: str | None = None

    @property
    def median_ms(self) -> float:
        return float(np.median(self.rounds_ms)) if self.rounds_ms else float("nan")


@dataclass
class LayerProfile:
    """Every layer of one model; ``rounds_ms`` of each layer line up with the judged rounds. ``calls_ms``:
    per round, the median time of the profiled calls themselves (None where the backend gives no such
    time: trtexec's profile is an average per layer only), the whole of which the layers' times are parts."""

    source: str
    calls_per_round: list[int]
    layers: list[LayerTiming]
    calls_ms: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> LayerProfile:
        """A layer profile read back, checked field by field (a device's results are untrusted input)."""
        d = d if isinstance(d, dict) else {}
        source, calls, layers, calls_ms = d.get("source"), d.get("calls_per_round"), d.get("layers"), d.get("calls_ms")
        if not isinstance(source, str) or not _ints(calls) or not isinstance(layers, list):
            raise InputError("malformed layer profile: it needs a source, calls_per_round (counts) and layers")
        if calls_ms is not None and not _times(calls_ms, len(calls)):
            raise InputError(f"malformed layer profile: calls_ms needs one time per round ({len(calls)})")
        return cls(source, list(calls), [_layer(layer, len(calls)) for layer in layers],
                   None if calls_ms is None else [float(t) for t in calls_ms])

    def by_name(self) -> dict[str, LayerTiming]:
        return {layer.name: layer for layer in self.layers}

    def record(self, e2e_rounds: Sequence[float], confidence: float) -> dict[str, Any]:
        """What a profile JSON keeps: the per-round times and their ``explain``-ation against ``e2e_rounds``."""
        return {**self.to_dict(), "explanation": explain(self, e2e_rounds, confidence)}


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _times(value: Any, rounds: int) -> bool:
    """One time in ms (or NaN: a round without a value) per round."""
    return (isinstance(value, list) and len(value) == rounds
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and (math.isnan(t) or 0 <= t < math.inf)
                    for t in value))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _layer(d: Any, rounds: int) -> LayerTiming:
    """One ``LayerTiming`` of a layer profile read back: every field of the right type, a time per round."""
    names = [f.name for f in fields(LayerTiming)]
    required = set(names) - {"precision"}  # a profile written before layers had a precision has none
    if not isinstance(d, dict) or not required <= set(d) <= set(names):
        raise InputError(f"malformed layer profile: a layer needs exactly the fields {', '.join(names)}")
    d = {"precision": None, **d}
    times = d["rounds_ms"]
    ok = (isinstance(d["name"], str) and isinstance(d["op_type"], str) and d["kind"] in KINDS
          and isinstance(d["provider"], str) and _times(times, rounds)
          and _strings(d["nodes"]) and _strings(d["fuses"]) and isinstance(d["fused"], bool)
          and (d["macs"] is None or _ints([d["macs"]])) and (d["precision"] is None or isinstance(d["precision"], str)))
    if not ok:
        raise InputError(f"malformed layer profile: layer {str(d['name'])[:60]!r} has a field of the wrong type "
                         f"or not one time per round ({rounds})")
    return LayerTiming(**{**d, "rounds_ms": [float(t) for t in times]})


def _dims(shapes: Sequence[dict[str, list[int]]]) -> list[list[int]]:
    return [next(iter(s.values()), []) for s in shapes]


def node_macs(op_type: str, inputs: list[list[int]], outputs: list[list[int]]) -> int | None:
    """Multiply-accumulates of one arithmetic node from its recorded shapes (None when unknown)."""
    if op_type not in ARITHMETIC or not outputs or not inputs or not inputs[0]:
        return None
    out = math.prod(outputs[0])
    if "Conv" in op_type:
        weight = inputs[3] if op_type == "QLinearConv" and len(inputs) > 3 else inputs[1] if len(inputs) > 1 else []
        return out * math.prod(weight[1:]) if len(weight) > 2 else None
    return out * inputs[0][-1]


def _runs(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    return runs, nodes


def per_round(values: Sequence[tuple[int, float]], rounds: int) -> list[float]:
    """The median of each round's values (``(round, value)`` pairs; round -1, a warm-up, is left out)."""
    by_round: list[list[float]] = [[] for _ in range(rounds)]
    for round_index, value in values:
        if round_index >= 0:
            by_round[round_index].append(value)
    return [float(np.median(b)) if b else float("nan") for b in by_round]


def parse_ort_profile(events: list[dict[str, Any]], names: NodeNames, run_rounds: Sequence[int],
                      rounds: int) -> LayerProfile:
    """Per-layer, per-round times from ONNX Runtime's profiling events (Chrome trace format:
    ``cat`` ``Node`` events named ``<node>_kernel_time``, ``dur`` in µs, ``args`` with ``op_name``,
    ``provider`` and shapes; a ``Session`` ``model_run`` event per call).

    ``run_rounds`` is the round of each profiled call in order (-1: a warm-up call, left out); the
    ``model_run`` events' durations are the calls' own times (``LayerProfile.calls_ms``)."""
    runs, nodes = _runs(events)
    starts = [r["ts"] for r in runs]
    if len(starts) != len(run_rounds):
        raise InputError(f"ONNX Runtime's profile has {len(starts)} runs, {len(run_rounds)} were made")
    per_run: dict[str, list[float]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for event in nodes:
        run = bisect_right(starts, event["ts"]) - 1
        if run < 0 or run_rounds[run] < 0:
            continue
        args = event.get("args", {})
        op_type = args.get("op_name", "?")
        where = names.locate(event["name"][: -len("_kernel_time")], op_type)
        key = where.name
        times = per_run.setdefault(key, [0.0] * len(starts))
        times[run] += event["dur"] / 1e3
        fact = facts.setdefault(key, {"ops": {}, "providers": set(), "nodes": [], "fuses": [], "fused": False,
                                      "macs": {}})
        fact["ops"][op_type] = fact["ops"].get(op_type, 0.0) + event["dur"]
        fact["providers"].add(args.get("provider", ""))
        node = event["name"][: -len("_kernel_time")]
        if node not in fact["nodes"]:
            fact["nodes"].append(node)
            fact["macs"][node] = node_macs(op_type, _dims(args.get("input_type_shape", [])),
                                           _dims(args.get("output_type_shape", [])))
        fact["fuses"] = list(dict.fromkeys([*fact["fuses"], *where.fuses]))
        fact["fused"] = fact["fused"] or where.fused
    calls = [sum(1 for r in run_rounds if r == i) for i in range(rounds)]
    layers = []
    for key, times in per_run.items():
        fact = facts[key]
        op_type = max(fact["ops"], key=fact["ops"].__getitem__)
        macs = [m for m in fact["macs"].values() if m is not None]
        layers.append(LayerTiming(
            name=key, op_type=op_type, kind=op_kind(op_type), provider="/".join(sorted(fact["providers"])),
            rounds_ms=per_round(list(zip(run_rounds, times)), rounds),
            nodes=fact["nodes"], fuses=fact["fuses"], fused=fact["fused"], macs=sum(macs) if macs else None,
        ))
    layers.sort(key=lambda layer: -layer.median_ms)
    return LayerProfile("onnxruntime", calls, layers,
                        per_round([(r, run["dur"] / 1e3) for r, run in zip(run_rounds, runs)], rounds))


class LayerSampler(ABC):
    """A few profiled calls of one model after every judged round (see the module docstring); a
    backend's sampler says how a call is profiled (``_run``) and reads the layers back (``finish``)."""

    def __init__(self, block_calls: int) -> None:
        self._cap = block_calls
        self._run_rounds: list[int] = []
        self._call_ms: list[float] = []  # each profiled call's own time, in the order of its round in _run_rounds
        self._rounds = 0
        self.wall_s = 0.0
        self._profiling_s = 0.0  # the profiled rounds' share of ``wall_s``
        self._judged_s = 0.0  # the judged blocks' time so far

    def start(self, feed: dict[str, np.ndarray], warmup_calls: int = 3) -> None:
        """Warm up (these calls are left out) on the judged session's inputs."""
        self._feed = feed
        self._calls(-1, warmup_calls)

    def _calls(self, round_index: int, count: int) -> None:
        start = time.perf_counter()
        self._run(count, round_index >= 0)
        spent = time.perf_counter() - start
        self.wall_s += spent
        if round_index >= 0:
            self._profiling_s += spent
        self._run_rounds += [round_index] * count

    @abstractmethod
    def _run(self, count: int, profiled: bool) -> None:
        """``count`` calls on ``self._feed``; ``profiled`` is False for warm-up calls."""

    def after_round(self, judged_ms: Sequence[float]) -> None:
        """Profile ``PROFILE_SHARE`` of the judged block's time, at least one call, at most ``block_calls``;
        after the first ``MIN_PROFILED_ROUNDS`` rounds, skip a round while profiling has so far cost more than
        ``PROFILE_SHARE`` of the judged time. A profiling session's fixed cost can exceed a block's share
        (``torch.profiler``: a 4 ms model's profiled rounds added 38 % to its profile's wall time on the
        2-core development machine, ONNX Runtime's twin 12 %); a skipped round has no layer values
        (``calls_per_round`` 0), and the attribution reads the rounds that have them."""
        self._judged_s += sum(judged_ms) / 1e3
        if self._rounds < MIN_PROFILED_ROUNDS or self._profiling_s <= PROFILE_SHARE * self._judged_s:
            per_call = statistics.median(judged_ms) if judged_ms else 0.0
            budget = PROFILE_SHARE * sum(judged_ms)
            self._calls(self._rounds, max(1, min(self._cap, int(budget / per_call) if per_call > 0 else 1)))
        self._rounds += 1

    @abstractmethod
    def finish(self) -> LayerProfile:
        """Stop profiling and the per-layer, per-round times."""


class OrtLayerSampler(LayerSampler):
    """A profiling twin of one model's ONNX Runtime session (its warm-up calls are profiled and left out)."""

    def __init__(self, make_session: Callable[[str], Any], model_path: Path, block_calls: int) -> None:
        super().__init__(block_calls)
        self._dir = tempfile.TemporaryDirectory(prefix="spiral-layers-")
        self._session = make_session(str(Path(self._dir.name) / "layers"))
        self._names = NodeNames(model_path)
        self._outputs = [o.name for o in self._session.get_outputs()]

    def _run(self, count: int, profiled: bool) -> None:
        for _ in range(count):
            self._session.run(self._outputs, self._feed)

    def finish(self) -> LayerProfile:
        """Read ONNX Runtime's events back (the trace file is removed)."""
        try:
            path = self._session.end_profiling()
            events = json.loads(Path(path).read_text())
        finally:
            self._dir.cleanup()
        return parse_ort_profile(events, self._names, self._run_rounds, self._rounds)


def require_layer_backend(backend: str) -> None:
    if backend not in LAYER_BACKENDS:
        why = f" ({NO_LAYERS[backend]})" if backend in NO_LAYERS else ""
        raise InputError(f"backend '{backend}' gives no per-layer profile{why}; "
                         f"per-layer profiles come from: {', '.join(LAYER_BACKENDS)}")


# ---- attribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A median over rounds and its distribution-free confidence interval."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float], z: float) -> Estimate:
        x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
        if x.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan)
        low, high = median_ci(x, z)
        return cls(float(np.median(x)), low, high)


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def _judged(layers: LayerProfile, e2e_rounds: Sequence[float], keep: np.ndarray | None = None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-round (layers x rounds) times in the judged rounds' terms, the end-to-end values over the rounds
    both have that were profiled (``keep``, a mask over those rounds: by default the ones with a profiled
    call; ``LayerSampler.after_round`` skips some), and the profiled calls' own times (None where the
    backend gives none).

    A profiled call runs slower than a judged one: the profiler's own cost, and a twin whose threads sleep
    between operators (they must not spin into the next judged block) wake for each operator. On the 2-core
    development machine ONNX Runtime's profiled calls took 1.1x (ResNet layout, width 48, 3.9 ms) to 2.2x
    (width 24, 1.1 ms) the judged median, while the nodes summed to 0.93-0.98 of their own call. So a layer's
    part of a round is its part of that round's profiled call (its time / the call's), and its time is that
    part of the round's judged time. A profile of one round (trtexec's separate profiling run, its average
    over many calls, no time of the call itself) stands beside the median of every end-to-end round, its
    layers' times as they are."""
    if len(layers.calls_per_round) == 1 and len(e2e_rounds) > 1:
        e2e_rounds = [float(np.median(e2e_rounds))]
    n = min(len(e2e_rounds), len(layers.calls_per_round))
    keep = np.asarray(layers.calls_per_round[:n]) > 0 if keep is None else keep[:n]
    times = np.array([layer.rounds_ms[:n] for layer in layers.layers], dtype=np.float64).reshape(len(layers.layers), n)
    times, e2e = times[:, keep], np.asarray(e2e_rounds[:n], dtype=np.float64)[keep]
    if layers.calls_ms is None:
        return np.nan_to_num(times), e2e, None
    calls = np.asarray(layers.calls_ms[:n], dtype=np.float64)[keep]
    scale = np.where(np.isfinite(calls) & (calls > 0), e2e / np.where(calls > 0, calls, 1.0), 1.0)
    return np.nan_to_num(times) * scale, e2e, calls


def explain(layers: LayerProfile, e2e_rounds: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Where the end-to-end time goes: each layer's and operator type's share of the end-to-end median
    (with an interval over the rounds), the attribution's coverage, and what dominates.

    A layer's share is the median over rounds of its part of the round's profiled call (``_judged``; where
    a backend does not time the call, its time / the round's end-to-end median), and its ``ms`` that share
    of the end-to-end median. Sums (an operator type, the coverage: how much of a call the layers account
    for) add the layers' medians and take each end of their interval as the sum of the layers' ends: a
    round's single profiled call can be preempted in any one layer, and the sum of medians is robust to
    that where the median of the sums is not."""
    z = _z(confidence)
    times, e2e, calls = _judged(layers, e2e_rounds)
    if e2e.size == 0:
        raise InputError("a layer profile needs at least one round")
    e2e_ms = float(np.median(e2e))
    rows = []
    for layer, row in zip(layers.layers, times):
        share = Estimate.of(row / e2e, z)
        rows.append({"name": layer.name, "op_type": layer.op_type, "kind": layer.kind, "provider": layer.provider,
                     "ms": float(np.median(row)), "share": share.value, "share_low": share.low,
                     "share_high": share.high, "macs": layer.macs, "fused": layer.fused, "fuses": layer.fuses,
                     "precision": layer.precision})
    rows.sort(key=lambda r: -r["share"])
    by_op: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_op.setdefault(r["op_type"], []).append(r)
    op_rows = sorted(({"op_type": op, "kind": group[0]["kind"], **_summed(group)} for op, group in by_op.items()),
                     key=lambda r: -r["share"])
    coverage = _summed(rows)
    result = {
        "source": layers.source,
        "end_to_end_ms": e2e_ms,
        "profiled_call_ms": None if calls is None else float(np.nanmedian(calls)),
        "rounds": int(e2e.size),
        "confidence": confidence,
        "coverage": {"value": coverage["share"], "low": coverage["share_low"], "high": coverage["share_high"]},
        "layers": rows,
        "op_types": op_rows,
        "kinds": {kind: sum(r["share"] for r in rows if r["kind"] == kind) for kind in KINDS},
        "regime": _regime(rows, e2e_ms),
    }
    quantized = [r for r in rows if r["op_type"] in QUANTIZED or r["precision"] == "int8"]
    if quantized or result["kinds"]["quantize"] > 0:
        result["int8"] = {
            "quantized": [r["name"] for r in quantized],
            "float": [r["name"] for r in rows if r["kind"] == "arithmetic" and r not in quantized],
            "quantize_nodes": sum(1 for r in rows if r["kind"] == "quantize"),
            "quantize_share": result["kinds"]["quantize"],
        }
    result["findings"] = findings(result)
    return result


def _summed(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """ms, share and its interval ends summed over ``rows`` (``layers`` counts them)."""
    return {"layers": len(rows), **{key: sum(r[key] for r in rows) for key in ("ms", "share", "share_low", "share_high")}}


def _regime(rows: list[dict[str, Any]], e2e_ms: float) -> dict[str, Any]:
    """Split the time into a part proportional to MACs and a fixed part per call.

    A line ``ms = per_call + ms_per_mac x MACs`` is fitted over the arithmetic layers (slope and
    intercept kept non-negative); the MACs-proportional part is the slope times all MACs, the rest
    of the operators' time (intercepts and every non-arithmetic operator) is the per-call part. Where
    no arithmetic layer's MACs are known (a TensorRT engine's layers without detailed layer
    information, a myelin region), the split is ``unknown``: it is not judged.
    """
    arithmetic = [r for r in rows if r["kind"] == "arithmetic" and r["macs"]]
    operators_ms = sum(r["ms"] for r in rows)
    if not arithmetic and any(r["kind"] == "arithmetic" for r in rows):
        return {"dominant": "unknown", "mac_share": None, "per_call_share": None, "operators": len(rows),
                "correlation": None}
    slope = 0.0
    correlation = None
    if len(arithmetic) >= 3:
        macs = np.array([r["macs"] for r in arithmetic], dtype=np.float64)
        ms = np.array([r["ms"] for r in arithmetic], dtype=np.float64)
        if np.ptp(macs) > 0 and np.ptp(ms) > 0:
            slope = max(0.0, float(np.polyfit(macs, ms, 1)[0]))
            correlation = float(np.corrcoef(macs, ms)[0, 1])
        else:
            slope = float(ms.sum() / macs.sum()) if np.ptp(macs) == 0 else 0.0
        slope = min(slope, float(ms.sum() / macs.sum()))  # the fitted line explains at most all of it
    mac_ms = slope * sum(r["macs"] for r in arithmetic)
    per_call_ms = max(0.0, operators_ms - mac_ms)
    dominant = "arithmetic" if mac_ms >= per_call_ms else "per-call"
    return {"dominant": dominant, "mac_share": mac_ms / e2e_ms, "per_call_share": per_call_ms / e2e_ms,
            "operators": len(rows), "correlation": correlation}


def findings(result: dict[str, Any]) -> list[str]:
    """The explanation in a few lines, most important first."""
    lines = []
    regime, kinds, coverage = result["regime"], result["kinds"], result["coverage"]["value"]
    corr = f" (time vs MACs r = {regime['correlation']:.2f})" if regime["correlation"] is not None else ""
    if regime["dominant"] == "unknown":
        lines.append(f"the arithmetic layers' MACs are unknown ({result['source']}), so whether the time tracks "
                     "MACs or is a fixed cost per call is not judged")
    elif regime["dominant"] == "arithmetic":
        lines.append(f"arithmetic dominates: {regime['mac_share']:.0%} of the end-to-end time tracks MACs{corr}; "
                     "removing channels or layers where the MACs are pays")
    else:
        per_op = 1e3 * result["end_to_end_ms"] * regime["per_call_share"] / max(1, regime["operators"])
        lines.append(f"fixed per-call cost dominates: {regime['per_call_share']:.0%} of the end-to-end time is flat "
                     f"in MACs{corr}, {regime['operators']} operators at {per_op:.0f} µs each on average; fewer, "
                     "larger operators (fusion, fewer layers, a larger batch) pay more than fewer channels")
    if kinds["layout"] >= 0.05:
        ops = ", ".join(r["op_type"] for r in result["op_types"] if r["kind"] == "layout")
        lines.append(f"memory and layout conversions take {kinds['layout']:.0%} ({ops})")
    if kinds["transfer"] >= 0.01:
        lines.append(f"data transfers between devices take {kinds['transfer']:.0%}")
    if "int8" in result:
        q = result["int8"]
        stayed = f": {', '.join(q['float'][:8])}{' …' if len(q['float']) > 8 else ''}" if q["float"] else ""
        lines.append(f"INT8: {len(q['quantized'])} arithmetic layers run quantized, {len(q['float'])} stayed "
                     f"float{stayed}; {q['quantize_nodes']} quantize/dequantize nodes take {q['quantize_share']:.0%}")
    unnamed = [r for r in result["layers"] if r["fused"] and not r["fuses"]]
    unnamed_share = sum(r["share"] for r in unnamed)
    if unnamed_share >= 0.05:
        names = ", ".join(r["name"] for r in unnamed[:4]) + (" …" if len(unnamed) > 4 else "")
        lines.append(f"{unnamed_share:.0%} of the end-to-end time is in {len(unnamed)} fused layers the profiler "
                     f"does not name after a module ({names})")
    outside = 1 - coverage
    whole = "end-to-end median" if result["profiled_call_ms"] is None else "profiled calls' time"
    if abs(outside) >= 0.15:
        where = ("outside the operators (session overhead, input and output copies)" if outside > 0
                 else "less than the operators' sum (profiled calls ran slower than judged ones)")
        lines.append(f"{abs(outside):.0%} of the {whole} is {where}")
    slower = (result["profiled_call_ms"] or result["end_to_end_ms"]) / result["end_to_end_ms"]
    if abs(slower - 1) >= 0.2:
        why = " (the profiler's cost, threads woken for each operator)" if slower > 1 else ""
        lines.append(f"the profiled calls took {slower:.1f}x the judged median{why}; each layer's share is its part "
                     "of its own call")
    return lines


def attribute_change(base: LayerProfile, new: LayerProfile, base_rounds: Sequence[float],
                     new_rounds: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Which layers account for the change from ``base`` to ``new``, measured in the same rounds:
    per layer the median per-round difference (ms, with an interval) and ratio, and its share of
    the end-to-end change; layers only in ``new`` are ``new``, only in ``base`` ``removed``.
    Largest contributors (by absolute difference) first."""
    z = _z(confidence)
    n = min(len(base_rounds), len(new_rounds), len(base.calls_per_round), len(new.calls_per_round))
    if n == 0:
        raise InputError("a change attribution needs at least one round of both models")
    total = Estimate.of(np.asarray(new_rounds[:n]) - np.asarray(base_rounds[:n]), z)
    both = (np.asarray(base.calls_per_round[:n]) > 0) & (np.asarray(new.calls_per_round[:n]) > 0)
    zero = np.zeros(int(both.sum()))
    old_times, new_times = ({layer.name: row for layer, row in zip(p.layers, _judged(p, rounds[:n], both)[0])}
                            for p, rounds in ((base, base_rounds), (new, new_rounds)))
    old_layers, new_layers = base.by_name(), new.by_name()
    rows = []
    for name in dict.fromkeys([*new_layers, *old_layers]):
        a, b = old_layers.get(name), new_layers.get(name)
        before, after = old_times.get(name, zero), new_times.get(name, zero)
        delta = Estimate.of(after - before, z)
        ratio = Estimate.of(after / before, z).value if a and b and before.min() > 0 else None
        layer = b or a
        rows.append({
            "name": name, "op_type": layer.op_type, "status": "changed" if a and b else ("new" if b else "removed"),
            "base_ms": float(np.median(before)), "new_ms": float(np.median(after)), "delta_ms": delta.value,
            "delta_low": delta.low, "delta_high": delta.high, "ratio": ratio,
            "share_of_change": delta.value / total.value if total.value else None,
        })
    rows.sort(key=lambda r: -abs(r["delta_ms"]))
    return {"change_ms": asdict(total), "base_ms": float(np.median(base_rounds[:n])),
            "new_ms": float(np.median(new_rounds[:n])), "rounds": n, "confidence": confidence, "layers": rows}
