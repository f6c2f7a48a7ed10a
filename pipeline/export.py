"""Export a torch model to ONNX and check that ONNX Runtime computes what torch computes."""

from __future__ import annotations

import inspect
import os
import typing
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import onnx
import torch
from torch import nn

from spiralprune.core.atomic import temp_file_beside
from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import get_backend
from spiralprune.deploy.backends.onnx_io import data_dependent_ops
from spiralprune.deploy.budget import ParityBudget
from spiralprune.kernels import OPSET
from spiralprune.pipeline.tasks import Task, build_task, output_names, outputs_of


def export_onnx(
    model: nn.Module, example_input: torch.Tensor, path: Path, *, simplify: bool = True, dynamic_batch: bool = True,
    opset: int = OPSET,
) -> Path:
    """Write ``path`` atomically: the input named ``input``, the outputs as ``spiralprune.pipeline.tasks.output_names``
    names them (``output`` for one tensor), with a dynamic batch axis (or the example's batch, fixed; always
    for a model that loops over its images, ``loops_over_images``)."""
    model = model.eval()
    dynamic_batch = dynamic_batch and not loops_over_images(model)
    with torch.no_grad():
        names = output_names(model(example_input))
    tmp = temp_file_beside(path)
    try:
        with warnings.catch_warnings(), torch.enable_grad():  # no_grad traces a fused attention kernel ONNX lacks
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example_input,),
                str(tmp),
                input_names=["input"],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None,
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            proto = onnxslim.slim(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, InputError):
            raise
        raise InputError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    return path


def loops_over_images(model: nn.Module) -> bool:
    """Whether ``model``'s forward takes a list of images (``images: List[Tensor]``) and loops over them, as
    torchvision's detectors do (their ``GeneralizedRCNNTransform`` resizes image by image; RetinaNet declares
    its list in a type comment, not an annotation): the export unrolls the loop, so the graph runs at the
    batch it was traced with."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    if any(isinstance(module, GeneralizedRCNNTransform) for module in model.modules()):
        return True
    try:
        hints = typing.get_type_hints(model.forward)
    except Exception:  # noqa: BLE001 - hints that do not resolve say nothing about a list of images
        return False
    first = next(iter(inspect.signature(model.forward).parameters), None)
    return first is not None and typing.get_origin(hints.get(first)) is list


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime against torch, every output compared. ``outputs`` has each output's max |diff| and
    scale (its largest |torch value|); ``max_abs_diff`` and ``output_scale`` are those of ``worst``, the
    output farthest from its tolerance under the limits the parity was run with (``limits``);
    ``top1_agreement`` is the task's agreement (``spiralprune.pipeline.tasks.Task.agreement``: top-1
    per sample or per pixel, reproduced detections), None where the task has none. ``data_dependent``: the
    graph's operators whose work depends on its data (``data_dependent_ops``); where the task compares such
    a graph's outputs through its agreement alone (a detector's in-graph NMS keeps a count and an order of
    boxes that ties decide), ``values_compared`` is False and only the agreement is judged."""

    max_abs_diff: float
    top1_agreement: float | None
    samples: int
    limits: ParityBudget
    output_scale: float = 1.0
    worst: str = "output"
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    data_dependent: tuple[str, ...] = ()
    values_compared: bool = True

    @staticmethod
    def tolerance_for(atol: float, scale: float) -> float:
        """``atol`` for an output up to 1 in magnitude, relative to its largest value above that.

        float32 keeps about 7 significant digits, so logits in the thousands (an untrained or
        freshly pruned model) differ by more than an absolute 1e-3 between two correct runtimes.
        """
        return atol * max(1.0, scale)

    def farthest(self, limits: ParityBudget) -> tuple[str, float, float] | None:
        """The output farthest from its tolerance under ``limits``: its name, max |diff| and tolerance; None
        when no output's values were compared."""
        if not self.values_compared:
            return None
        outputs = self.outputs or {self.worst: {"max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale}}

        def tolerance(name: str) -> float:
            return self.tolerance_for(limits.atol_of(name), outputs[name]["output_scale"])

        name = max(outputs, key=lambda n: outputs[n]["max_abs_diff"] / max(tolerance(n), 1e-300))
        return name, outputs[name]["max_abs_diff"], tolerance(name)

    @property
    def tolerance(self) -> float:
        return self.tolerance_for(self.limits.atol_of(self.worst), self.output_scale)

    @property
    def passed(self) -> bool:
        agrees = self.top1_agreement is None or self.top1_agreement >= self.limits.min_top1_agreement
        return (not self.values_compared or self.max_abs_diff <= self.tolerance) and agrees

    def to_dict(self) -> dict:
        return asdict(self) | {"limits": self.limits.model_dump(), "tolerance": self.tolerance, "passed": self.passed}


def check_parity(
    model: nn.Module,
    onnx_path: Path,
    inputs: torch.Tensor,
    limits: ParityBudget,
    *,
    task: Task | None = None,
    batch_size: int = 64,
) -> ParityResult:
    """Run the same real inputs through torch and ONNX Runtime and compare every output against its
    tolerance in ``limits`` (``samples`` there is the caller's: ``inputs`` are compared), and the
    task's agreement (``task`` None: a classifier's top-1). A graph whose batch is fixed takes batches of
    its own size, the last one filled and its copies' outputs dropped
    (``spiralprune.deploy.backends.base.Runner.infer_filled``), so every input is compared once."""
    task = task or build_task()
    model = model.eval()
    dependent = data_dependent_ops(onnx_path)
    by_values = task.compares_values(dependent)
    diffs: dict[str, float] = {}
    scales: dict[str, float] = {}
    agreement, agreed = 0.0, True
    with get_backend("ort-cpu")(onnx_path).load() as runner, torch.no_grad():
        batch_size = runner.fixed_batch() or batch_size
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            expected = outputs_of(model(batch))
            got = {name: torch.from_numpy(value)
                   for name, value in runner.infer_filled({"input": batch.numpy()}).items()}
            if list(got) != list(expected):
                raise InputError(f"{onnx_path}: ONNX outputs {list(got)} differ from torch's {list(expected)}")
            unknown = sorted(set(limits.outputs) - set(expected))
            if unknown:
                raise InputError(f"parity.outputs names {', '.join(repr(n) for n in unknown)}, not an output of the "
                                 f"model (its outputs: {', '.join(expected)})")
            for name, want in expected.items() if by_values else ():
                if got[name].shape != want.shape:
                    dependent_note = f" (its graph has {', '.join(dependent)})" if dependent else ""
                    raise InputError(f"{onnx_path}: ONNX output '{name}' shape {tuple(got[name].shape)} differs from "
                                     f"torch {tuple(want.shape)}{dependent_note}")
                diff = (got[name].double() - want.double()).abs()
                scales[name] = max(scales.get(name, 0.0), float(want.abs().max()) if want.numel() else 0.0)
                worst = float(diff.max()) if diff.numel() and bool(diff.isfinite().all()) else float("inf")
                diffs[name] = max(diffs.get(name, 0.0), worst if diff.numel() else 0.0)
            share = task.agreement(expected, got)
            agreed = agreed and share is not None
            agreement += (share or 0.0) * len(batch)
    outputs = {name: {"max_abs_diff": diffs[name], "output_scale": scales[name]} for name in diffs}
    result = ParityResult(0.0, agreement / len(inputs) if agreed else None, len(inputs), limits, outputs=outputs,
                          data_dependent=tuple(dependent), values_compared=by_values)
    if not by_values:
        return replace(result, worst="")
    worst, diff, _ = result.farthest(limits)
    return replace(result, max_abs_diff=diff, output_scale=scales[worst], worst=worst)
