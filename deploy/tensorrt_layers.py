"""Where the time goes in a TensorRT engine: its layers' times, named by the PyTorch modules they fuse.

TensorRT reports a time per *engine* layer: ``trtexec --dumpProfile --separateProfileRun
--exportProfile=FILE`` writes a JSON list whose first element is ``{"count": N}`` (the profiled
iterations) followed by one ``{"name", "timeMs", "averageMs", "medianMs", "percentage"}`` per layer
(``exportJSONProfile`` in NVIDIA/TensorRT ``samples/common/sampleReporting.cpp``, which streams the values
as C++ writes them, unescaped names and ``nan`` included; before 8.x's ``medianMs``, four keys), and
``tensorrt.IProfiler.report_layer_time(layer_name, ms)`` is called once per layer and call on a context
with a profiler attached (``spiralprune.deploy.backends.tensorrt_native``).

**Names.** The ONNX parser names a layer after its ONNX node (``/layer1/layer1.0/conv1/Conv``, the torch
exporter's module scope); the builder joins the layers it fuses with `` + ``
(``/layer1/layer1.0/conv2/Conv + /layer1/layer1.0/Add + /layer1/layer1.0/relu_1/Relu``), wraps pointwise
fusions in ``PWN(a, b)``, names the layers it inserts after what they serve (``Reformatting CopyNode for
Input Tensor 0 to <layer>``: a layout or precision conversion) and a region it hands to its graph compiler
(myelin) ``{ForeignNode[<first node>...<last node>]}``, which names only the region's ends. The engine's
layer information (``trtexec --exportLayerInfo=FILE``, or ``IEngineInspector`` as JSON; both
``{"Layers": [...], "Bindings": [...]}``) lists every layer; an engine built with detailed profiling
verbosity gives each layer its ``LayerType`` and, from TensorRT 8.6, a ``Metadata`` string that names every
ONNX node the layer holds (``[ONNX Layer: /a/Conv]`` entries separated by ``\\x1e`` or ``\\x1f``, as NVIDIA's
trt-engine-explorer reads them); built with the default verbosity, its layers are names only. A layer is
named after the module of its arithmetic node (else its first), and ``fuses`` every module of its nodes.

The device runner ships this module (it needs no onnx): ``trtexec``'s profile is read where it ran.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import ARITHMETIC, LayerProfile, LayerTiming, module_path, op_kind

REFORMAT = "Reformatting CopyNode for "
_FOREIGN = re.compile(r"^\{ForeignNode\[(?P<first>.*?)\.\.\.(?P<last>.*)\]\}$")
_PWN = re.compile(r"^PWN\((?P<body>.*)\)$")
_METADATA = re.compile(r"\[ONNX Layer: (?P<node>[^|\]]+?)(?: \|[^\]]*)?\]")
_PROFILE_KEYS = ("name", "averageMs")
_NAN_PERCENTAGE = re.compile(r'(?P<key>"percentage" : )-?nan\b')


@dataclass(frozen=True)
class EngineLayer:
    """What the engine's layer information says of one layer: its type, the ONNX nodes it holds, and its
    multiply-accumulates where it says enough to count them (a convolution: output elements x weights per
    output channel)."""

    layer_type: str | None
    onnx_nodes: tuple[str, ...]
    macs: int | None = None


def _convolution_macs(layer: dict) -> int | None:
    """MACs of a detailed ``Convolution`` record: ``Weights.Count / OutMaps`` per output element."""
    weights, out_maps, outputs = layer.get("Weights"), layer.get("OutMaps"), layer.get("Outputs")
    if layer.get("ParameterType") != "Convolution" or not isinstance(weights, dict) or not outputs:
        return None
    count, dims = weights.get("Count"), outputs[0].get("Dimensions") if isinstance(outputs[0], dict) else None
    if not (isinstance(count, int) and isinstance(out_maps, int) and out_maps > 0 and isinstance(dims, list)
            and all(isinstance(d, int) and d > 0 for d in dims)):
        return None
    return math.prod(dims) * count // out_maps


def parse_layer_info(text: str) -> dict[str, EngineLayer]:
    """Layer name -> ``EngineLayer`` from ``--exportLayerInfo`` / ``IEngineInspector`` JSON (names only for an
    engine built without detailed profiling verbosity)."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the TensorRT layer information is not JSON: {exc}") from exc
    layers = info.get("Layers") if isinstance(info, dict) else None
    if not isinstance(layers, list):
        raise InputError("the TensorRT layer information has no \"Layers\" list")
    engine: dict[str, EngineLayer] = {}
    for layer in layers:
        if isinstance(layer, str):
            engine[layer] = EngineLayer(None, ())
        elif isinstance(layer, dict) and isinstance(layer.get("Name"), str):
            metadata = layer.get("Metadata")
            nodes = tuple(m["node"].strip() for m in _METADATA.finditer(metadata)) if isinstance(metadata, str) else ()
            kind = layer.get("LayerType")
            engine[layer["Name"]] = EngineLayer(kind if isinstance(kind, str) else None, nodes, _convolution_macs(layer))
        else:
            raise InputError(f"the TensorRT layer information has a layer that is neither a name nor a record with "
                             f"a Name: {str(layer)[:80]}")
    return engine


def _top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i = start = i + len(separator)
            continue
        depth += (text[i] in "([{") - (text[i] in ")]}")
        i += 1
    return [p.strip() for p in [*parts, text[start:]] if p.strip()]


def _split(name: str) -> list[str]:
    """The ONNX nodes a layer name joins: `` + `` at the top level, ``PWN(a, b)`` unwrapped."""
    nodes = []
    for part in _top_level(name, " + "):
        pointwise = _PWN.match(part)
        nodes += [n for inner in _top_level(pointwise["body"], ", ") for n in _split(inner)] if pointwise else [part]
    return nodes


def _op_type(node: str) -> str:
    """``Conv`` from ``/layer1/layer1.0/conv1/Conv`` or the unscoped ``Conv_0``."""
    return re.sub(r"_\d+$", "", node.rsplit("/", 1)[-1])


def tensorrt_layer(name: str, rounds_ms: list[float], engine: Mapping[str, EngineLayer] | None = None) -> LayerTiming:
    """One engine layer as a ``LayerTiming``, named after the module it computes (see the module docstring)."""
    info = (engine or {}).get(name)
    if name.startswith(REFORMAT) or (info is not None and info.layer_type == "Reformat" and not info.onnx_nodes):
        return LayerTiming(name, "Reformat", "layout", "TensorRT", rounds_ms, [name], [], True)
    foreign = _FOREIGN.match(name)
    if info is not None and info.onnx_nodes:
        nodes = list(info.onnx_nodes)
    elif foreign:
        nodes = [foreign["first"], foreign["last"]]
    else:
        nodes = _split(name) or [name]
    modules = [m for m in (module_path(n) for n in nodes) if m]
    ops = [_op_type(n) for n in nodes]
    main = next((i for i, op in enumerate(ops) if op in ARITHMETIC), 0)
    op_type = "ForeignNode" if foreign and not any(op in ARITHMETIC for op in ops) else ops[main]
    named = module_path(nodes[main])
    return LayerTiming(named or (modules[0] if modules else name), op_type, op_kind(op_type), "TensorRT", rounds_ms,
                       nodes, list(dict.fromkeys(modules)), len(nodes) > 1 or bool(foreign) or not named,
                       info.macs if info is not None else None)


def tensorrt_profile(source: str, calls_per_round: list[int], layer_rounds: Mapping[str, Sequence[float]],
                     engine: Mapping[str, EngineLayer] | None = None,
                     calls_ms: list[float] | None = None) -> LayerProfile:
    """A ``LayerProfile`` of engine layers' per-round times (``calls_ms``: the profiled calls' own times, None
    for trtexec's averages); engine layers named after one module are one layer."""
    merged: dict[str, LayerTiming] = {}
    for name, times in layer_rounds.items():
        layer = tensorrt_layer(name, [float(t) for t in times], engine)
        held = merged.get(layer.name)
        if held is None:
            merged[layer.name] = layer
            continue
        held.rounds_ms = [a + b for a, b in zip(held.rounds_ms, layer.rounds_ms)]
        held.nodes = list(dict.fromkeys([*held.nodes, *layer.nodes]))
        held.fuses = list(dict.fromkeys([*held.fuses, *layer.fuses]))
        held.fused = True
        held.macs = None if held.macs is None and layer.macs is None else (held.macs or 0) + (layer.macs or 0)
        if held.kind != "arithmetic" and layer.kind == "arithmetic":
            held.op_type, held.kind = layer.op_type, layer.kind
    layers = sorted(merged.values(), key=lambda layer: -float(np.nanmedian(layer.rounds_ms)))
    return LayerProfile(source, calls_per_round, layers, calls_ms)


def parse_trtexec_profile(text: str, layer_info: str | None = None) -> LayerProfile:
    """Per-layer times of an ``--exportProfile`` file (one round: trtexec's average over its count), named
    with the ``--exportLayerInfo`` file where there is one."""
    try:  # trtexec streams C++ doubles: a profile whose layers all took 0 ms has "percentage" : -nan
        records = json.loads(_NAN_PERCENTAGE.sub(r"\g<key>NaN", text))
    except json.JSONDecodeError as exc:
        raise InputError(f"the trtexec --exportProfile file is not JSON: {exc}") from exc
    if not isinstance(records, list) or not records or not isinstance(records[0], dict) or "count" not in records[0]:
        raise InputError("the trtexec --exportProfile file is not a list starting with {\"count\": N}")
    times: dict[str, list[float]] = {}
    for record in records[1:]:
        if not isinstance(record, dict) or any(k not in record for k in _PROFILE_KEYS):
            raise InputError(f"the trtexec --exportProfile file has a record without {' or '.join(_PROFILE_KEYS)}: "
                             f"{str(record)[:80]}")
        average = record["averageMs"]
        if not isinstance(record["name"], str) or not isinstance(average, (int, float)) or not average >= 0:
            raise InputError(f"the trtexec --exportProfile file has a record with a bad name or time: "
                             f"{str(record)[:80]}")
        times[record["name"]] = [times.get(record["name"], [0.0])[0] + float(average)]
    count = records[0]["count"]
    if not isinstance(count, int) or count < 1:
        raise InputError(f"the trtexec --exportProfile file counts {count!r} profiled iterations")
    engine = parse_layer_info(layer_info) if layer_info is not None else None
    return tensorrt_profile("trtexec", [count], times, engine)
