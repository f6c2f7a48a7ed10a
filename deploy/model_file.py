"""What an ONNX model file ships, read from the file alone: the facts a budget's ``size:`` limits.

``ModelFile.of(path)`` is the one place these are counted, for every model under judgement (a run's
tries and recovery, its INT8 model, ``spiralprune gate``, ``spiralprune deploy``, ``spiralprune quantize``),
so a size limit means the same everywhere and a new one is one more fact here:

- ``size_mb``: the file's bytes / 10^6;
- ``params``: the elements of every initializer (the weights the file stores; a batch norm folded into
  its convolution by the exporter is not counted twice);
- ``macs``: multiply-accumulates of one call, from the shapes ONNX's shape inference gives every
  convolution, matrix product and recurrent or attention node (``spiralprune.deploy.layer_profile.node_macs``,
  the same count the layer profiles report); a dimension shape inference leaves symbolic (a dynamic
  batch) counts as 1. Elementwise operators, pooling and normalisation are not counted.

ONNX's own tools give shapes but no MAC count, and no maintained library in the dependencies counts
them, so the sum over nodes is written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import node_macs


@dataclass(frozen=True)
class ModelFile:
    size_mb: float
    params: int
    macs: int

    @classmethod
    def of(cls, path: Path) -> ModelFile:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except (OSError, DecodeError) as exc:
            raise InputError(f"{path}: not a readable ONNX model ({exc})") from None
        params = sum(math.prod(t.dims) for t in model.graph.initializer)
        return cls(path.stat().st_size / 1e6, int(params), _macs(model))


def _macs(model: onnx.ModelProto) -> int:
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except onnx.shape_inference.InferenceError:  # a custom domain's operators, say: count what the file declares
        graph = model.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes.setdefault(value.name, [d.dim_value if d.HasField("dim_value") else 1 for d in dims])
    total = 0
    for node in graph.node:
        macs = node_macs(node.op_type, [shapes.get(name, []) for name in node.input],
                         [shapes.get(name, []) for name in node.output])
        total += macs or 0
    return total
