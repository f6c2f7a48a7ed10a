"""Input and output signatures read from an ONNX file, for runtimes that do not report them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import InputMetadata


def read_onnx_io(model_path: Path) -> tuple[InputMetadata, list[str]]:
    """(input name -> (shape, dtype), output names) of an ONNX model; dynamic dims by name or None."""
    import onnx
    from google.protobuf.message import DecodeError

    if not Path(model_path).is_file():
        raise InputError(f"model file not found: {model_path}")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise InputError(f"cannot read ONNX model {model_path}: {exc}") from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs: InputMetadata = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape: list[int | str | None] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
        ]
        inputs[value.name] = (shape, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
    outputs = [value.name for value in model.graph.output]
    if not inputs or not outputs:
        raise InputError(f"{model_path} is not an ONNX model with inputs and outputs")
    return inputs, outputs


# Operators whose work depends on the values of their inputs, not only on their shapes: how many boxes
# survive non-maximum suppression, how many elements are non-zero, how often a loop runs, which branch
# runs. A graph with one of them takes as long as its data makes it; random inputs time another
# workload than real ones (random images: almost no box passes a detector's score threshold).
DATA_DEPENDENT_OPS = frozenset({"NonMaxSuppression", "NonZero", "Loop", "If", "Scan", "Unique", "Compress"})


def data_dependent_ops(model_path: Path) -> list[str]:
    """The operator types of ``DATA_DEPENDENT_OPS`` in an ONNX model (its subgraphs too), sorted; none
    for a file that is not ONNX (a torch target's module) or an ONNX Runtime graph it saved."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, ValueError, OSError):
        return []
    found: set[str] = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.op_type in DATA_DEPENDENT_OPS:
                found.add(node.op_type)
            graphs += [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
            graphs += [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    return sorted(found)
