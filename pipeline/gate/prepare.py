"""A model prepared to be measured: an ONNX file as given, or a torch model exported here (the release
candidate and the released model the gate measures, the models of ``spiralprune compare``, ``profile``,
``quantize`` and ``deploy``), and the data it is measured and evaluated on.

Only an exported model has a source to check ONNX parity against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pydantic import ValidationError

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.onnx_io import data_dependent_ops, read_onnx_io
from spiralprune.pipeline.config import TargetConfig
from spiralprune.pipeline.data import drawn, load_datasets, splits_of
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.prune import dtype_name
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.tasks import Task, TaskConfig, build_task


@dataclass(frozen=True)
class PreparedModel:
    onnx_path: Path
    source: nn.Module | None
    input_shape: list[int]
    input_dtype: str = "float32"  # an exported model's (int64: token ids); an ONNX file given as is is not checked


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends for a corrupt file
        raise InputError(f"{path} is not a readable ONNX model: {type(exc).__name__}") from None


def _graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def onnx_input_dims(path: Path) -> list[int | None]:
    """The first input's dimensions, None where dynamic."""
    inputs = _graph_inputs(_load_onnx(path))
    if not inputs:
        raise InputError(f"{path} has no inputs")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        raise InputError(f"{path}: input '{inputs[0].name}' has no shape")
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def onnx_input_shape(path: Path, given: list[int] | None) -> list[int]:
    """``given`` checked against the model's static dimensions, or the model's own shape (dynamic batch = 1)."""
    dims = onnx_input_dims(path)
    if given is None:
        if any(d is None for d in dims[1:]):
            raise InputError(f"{path} has dynamic dimensions besides the batch; pass --input-shape")
        return [dims[0] or 1, *dims[1:]]
    if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given)):
        shown = ["?" if d is None else d for d in dims]
        raise InputError(f"input shape {given} does not fit {path}, whose input is {shown}")
    return given


def onnx_task(config: TaskConfig, path: Path) -> Task:
    """``config``'s task for the ONNX model at ``path``, its classes read from the output the task reads:
    a classifier's logits ``[batch, classes]``, a segmenter's ``[batch, classes, H, W]`` (``out`` when
    there is one); detection and custom tasks need no count."""
    if config.kind not in ("classification", "segmentation"):
        return build_task(config)
    outputs = {o.name: o for o in _load_onnx(path).graph.output}
    name = config.output or ("out" if "out" in outputs else next(iter(outputs), None))
    dims = outputs[name].type.tensor_type.shape.dim if name in outputs else []
    axis = -1 if config.kind == "classification" else 1
    expected = "[batch, classes] logits" if axis == -1 else "[batch, classes, height, width] logits"
    if len(dims) < 2 or not dims[axis].HasField("dim_value") or dims[axis].dim_value < 2:
        raise InputError(f"{path}: cannot tell the number of classes from its output shape; {config.kind} needs "
                         f"{expected}")
    return build_task(config, dims[axis].dim_value)


def prepare_model(model: str | nn.Module, work_dir: Path, input_shape: list[int] | None, *,
                      weights: Path | None = None, example: torch.Tensor | None = None) -> PreparedModel:
    """``model`` is an ``.onnx`` file, a spiralprune run folder (its result's ONNX file, as ``spiralprune deploy``
    ships it), or a module, model spec (with its ``weights``) or spiral checkpoint exported to ``work_dir``.

    The input shape defaults to the ONNX input's (a dynamic batch taken as 1) or the checkpoint's;
    a checkpoint's input dtype is its own (token ids for a text model).
    """
    if not isinstance(model, nn.Module):
        path = Path(model)
        if path.is_dir() and RunFolder.holds_run(path):
            path = RunFolder(path).result_onnx()
        if path.suffix == ".onnx":
            if not path.is_file():
                raise InputError(f"model file not found: {path}")
            if weights is not None:
                raise InputError(f"weights apply to a model spec; {path} is an ONNX file, which holds its own")
            return PreparedModel(path, None, onnx_input_shape(path, input_shape))
    module, example, _ = module_and_example(model, example, input_shape, weights)
    return PreparedModel(export_onnx(module, example, work_dir / "model.onnx"), module, list(example.shape),
                     dtype_name(example))


def module_and_example(model: str | nn.Module, example: torch.Tensor | None, input_shape: list[int] | None,
                       weights: Path | None = None, input_dtype: str | None = None
                       ) -> tuple[nn.Module, torch.Tensor, str]:
    """The module (in eval mode) a module, spec or checkpoint stands for, the input it is exported with
    (``example``, else zeros of ``input_shape`` and ``input_dtype``: by default a checkpoint's recorded
    ones) and what was loaded (a run folder's result checkpoint, say)."""
    if isinstance(model, nn.Module):
        if example is None:
            raise InputError("a module needs an example input: one batch as the deployed model is called")
        return model.eval(), example, f"the given {type(model).__name__}"
    source = load_source(str(model), weights)
    example = example if example is not None else source.example(input_shape, input_dtype)
    return source.module.eval(), example, source.name


def measured_options(model: PreparedModel, target: TargetConfig) -> dict:
    """The backend options ``model`` is measured with: on a torch target its live module
    (the ONNX export gives its inputs), which an ONNX file given as is does not have."""
    if not target.runs_live_module:
        return {}
    if model.source is None:
        raise InputError(
            f"backend '{target.backend}' runs the live torch module, which {model.onnx_path.name} does not hold: "
            "give the model spec or spiral checkpoint it was exported from (a spec with --input-shape)"
        )
    return {"module": model.source}


def target_config(target: str | dict | TargetConfig) -> TargetConfig:
    """A backend's name, a run config's ``target`` keys (the command line's options, the Python API's
    dict) or a ``TargetConfig``, checked as a run config's ``target`` is (one line when it is not)."""
    if isinstance(target, TargetConfig):
        return target
    try:
        return TargetConfig(**({"backend": target} if isinstance(target, str) else target))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(error["msg"].removeprefix("Value error, ")) from None


def parity_inputs(
    input_shape: list[int], val_set: Dataset | None, samples: int, *,
    dtype: str = "float32", model: nn.Module | None = None,
) -> torch.Tensor:
    """Real validation inputs when there are any (drawn at random, seeded), else seeded ones: standard-normal, or for int64
    (token ids) uniform below the smallest vocabulary of ``model``'s embeddings."""
    if val_set is not None:  # the inputs alone: targets (a detector's boxes) need not batch
        return torch.stack([sample[0] for sample in drawn(val_set, samples)])
    generator = torch.Generator().manual_seed(0)
    shape = [samples, *input_shape[1:]]
    if dtype != "int64":
        return torch.randn(shape, generator=generator)
    vocab = min((m.num_embeddings for m in (model.modules() if model else ()) if isinstance(m, nn.Embedding)),
                default=None)
    if vocab is None:
        raise InputError("int64 inputs are token ids, but the model has no nn.Embedding to read them")
    return torch.randint(0, vocab, shape, generator=generator)


def validation_set(data: str | Dataset | DataLoader | None, shape: list[int]) -> Dataset | None:
    """The validation split the gate evaluates on: a data spec's (as ``--data`` names it), or the given one."""
    if data is None:
        return None
    val_set = load_datasets(data, shape)[1] if isinstance(data, str) else splits_of(data, data, "data").val
    if len(val_set) == 0:
        raise InputError(f"data '{data}' has an empty validation split")
    sample_shape = list(val_set[0][0].shape)
    if sample_shape != shape[1:]:
        raise InputError(f"the data's samples have shape {sample_shape}; the model takes {shape[1:]}")
    return val_set


# Validation samples a measurement feeds a graph whose work depends on its data (cycled to the batch).
FEED_SAMPLES = 64


def feed_note(dependent: list[str], feed: dict[str, np.ndarray] | None) -> str | None:
    """What a measurement fed a graph whose work depends on its inputs' values (``dependent``: its operators
    that make it so), and what to do where that was random; None for any other graph."""
    if not dependent:
        return None
    return (f"inputs: {'validation samples' if feed is not None else 'seeded random'}; the graph's work depends on "
            f"its inputs' values ({', '.join(dependent)})"
            + ("" if feed is not None else ": random inputs time another workload than real ones, pass --data"))


def data_feed(onnx_path: Path, val_set: Dataset | None) -> dict[str, np.ndarray] | None:
    """Real validation inputs for measuring ``onnx_path`` when its work depends on the values of its
    inputs (``spiralprune.deploy.backends.onnx_io.data_dependent_ops``: non-maximum suppression in the
    graph, say; random images leave it almost no box to keep) and there is a validation split; None
    (seeded random inputs) otherwise, where the values change nothing but the arithmetic's operands."""
    if val_set is None or not data_dependent_ops(onnx_path):
        return None
    names = list(read_onnx_io(onnx_path)[0])
    if len(names) != 1:
        raise InputError(f"{onnx_path} takes {len(names)} inputs ({', '.join(names)}); validation samples feed one")
    samples = torch.stack([sample[0] for sample in drawn(val_set, FEED_SAMPLES)])
    return {names[0]: samples.numpy()}
