"""spiral from Python: the operations of the command line on modules, DataLoaders and paths.

``spiralprune.shrink`` is ``spiralprune run`` on a module you hold; ``spiralprune.export``, ``spiralprune.profile``,
``spiralprune.compare`` and ``spiral.gate`` take a module (with an example input), a model spec, a spiral
checkpoint or run folder, or (all but ``export``) an ``.onnx`` file; ``spiralprune export`` and ``spiralprune gate``
are built on them, ``spiralprune profile`` and ``spiralprune compare`` on the same pieces. Every function raises
``spiralprune.InputError`` (a one-line message) for bad input.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import BACKENDS
from spiralprune.deploy.budget import LatencyBudget, ParityBudget
from spiralprune.deploy.layer_profile import LAYER_BACKENDS
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.profiler import Profile, Target, profile_model, profile_paired
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.target_profiles import ALIASES, list_targets
from spiralprune.deploy.validation import validate
from spiralprune.deploy.verdict import Verdict
from spiralprune.kernels import OPSET
from spiralprune.pipeline.compare.profiles import (
    BASE, NEW, REGRESSION_BUDGET, ProfileComparison, paired_attribution, paired_comparison, regression_budget,
    regression_question,
)
from spiralprune.pipeline.compare.releases import Release
from spiralprune.pipeline.config import TargetConfig, parse_config
from spiralprune.pipeline.data import LoaderSettings, splits_of
from spiralprune.pipeline.evaluate import evaluate_onnx
from spiralprune.pipeline.export import ParityResult, check_parity, export_onnx
from spiralprune.pipeline.gate.budget import GateBudget, load_budget, parse_budget
from spiralprune.pipeline.gate.prepare import (
    data_feed, measured_options, module_and_example, onnx_input_dims, onnx_task, parity_inputs,
    prepare_model, target_config, validation_set,
)
from spiralprune.pipeline.gate.checks import BASELINE, CANDIDATE, GateResult, latency_questions, run_gate
from spiralprune.pipeline.gate.report import GateContext
from spiralprune.pipeline.models import given_modules
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.prune import dtype_name
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.spiral import Spiral
from spiralprune.pipeline.tasks import TaskConfig, build_task

Model = nn.Module | str | Path  # a module, a model spec, a spiral checkpoint or run folder (or an .onnx file)
GIVEN_DATA = "python:given"  # config.json's data.source when shrink was given the data sets


@dataclass(frozen=True)
class Result:
    """A finished ``shrink``: did its result meet the budget, the result's ONNX file and checkpoint
    (``onnx``, ``checkpoint``: at the run folder's root), the reports, and the ledger's lines (``steps``)."""

    met_budget: bool
    message: str
    onnx: Path
    checkpoint: Path
    report: Path
    steps: list[LedgerEntry]
    teacher: dict
    _base: nn.Module | None = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        """The result as a PyTorch module (the float model an accepted INT8 stage was quantized from)."""
        return load(self.checkpoint, base=self._base)


@dataclass(frozen=True)
class Exported:
    """An ``export``: what was exported (a run folder's result checkpoint, say), the ONNX file (removed
    when parity failed), the input it was exported with, the batch the graph is fixed at (None: dynamic),
    and the parity check."""

    source: str
    onnx: Path
    input_shape: list[int]
    input_dtype: str
    fixed_batch: int | None
    parity: ParityResult


def shrink(
    model: nn.Module | str, train: Dataset | DataLoader, val: Dataset | DataLoader, example_input: torch.Tensor, *,
    out: str | Path, target: str | dict | TargetConfig = "ort-cpu", budget: dict | None = None,
    num_classes: int | None = None, weights: str | Path | None = None, resume: bool = False,
    console: Console | None = None, **settings: Any,
) -> Result:
    """Prune, distill, export and measure ``model`` on ``target`` until it meets ``budget``: ``spiralprune run``.

    ``model`` is your module (its checkpoints rebuild from a copy of it; see ``load``) or a model spec
    with optional ``weights``; ``train`` and ``val`` are datasets or DataLoaders of (input, label);
    ``example_input`` is one batch as the deployed model is called (its shape is the run's
    ``input_shape``). ``target``, ``budget`` and ``settings`` are the run config's keys (``schedule``,
    ``prune``, ``distill``, ``quantize``, ``teacher_training``, ``parity``, ``seed``, ``data``), as
    dicts (``data`` for its loader settings: the data are ``train`` and ``val``); ``num_classes``
    defaults to the width of the model's output on ``example_input``. The result is also in ``out``
    as ``model.onnx`` and ``model/``.
    """
    spec, base = _spec_of(model)
    with given_modules({spec.removeprefix("python:"): base} if base is not None else {}):
        if num_classes is None:
            num_classes = _output_width(base if base is not None else load_source(spec, _path(weights)).module,
                                        example_input)
        config = parse_config({
            "model": spec, "input_shape": list(example_input.shape), "num_classes": num_classes,
            "target": target_config(target).model_dump(mode="json"),
            **({"weights": str(weights)} if weights is not None else {}),
            **({"budget": budget} if budget is not None else {}), **settings,
            "data": {**settings.get("data", {}), "source": GIVEN_DATA},
        }, "spiralprune.shrink")
        data = splits_of(train, val, "spiralprune.shrink", LoaderSettings.of(config.data))
        outcome = Spiral(config, Path(out), resume=resume, console=console, data=data).run()
    folder = RunFolder(Path(out))
    return Result(outcome.met_budget, outcome.message, folder.model_onnx, folder.model, folder.report,
                  outcome.entries, outcome.teacher, base)


def load(path: str | Path, base: nn.Module | None = None) -> nn.Module:
    """A spiral checkpoint or run folder (its result) as a module in eval mode. A run that ``shrink``
    made from your module rebuilds from ``base``: that module (trained or not; its weights are replaced)."""
    with given_modules({type(base).__name__: base} if base is not None else {}):
        return load_source(str(path)).module


def export(
    model: Model, out: str | Path, *, example_input: torch.Tensor | None = None, input_shape: list[int] | None = None,
    input_dtype: str | None = None, weights: str | Path | None = None, dynamic_batch: bool = True,
    opset: int = OPSET, parity: ParityBudget | dict | None = None, task: TaskConfig | dict | None = None,
) -> Exported:
    """``model`` exported to ``out`` (ONNX) and checked against torch on 64 inputs (``spiralprune export``); a
    file that does not compute what the torch model computes is removed (``parity.passed`` is False).
    Every output is compared within ``parity``'s tolerances (a ``ParityBudget`` or its keys: ``atol``,
    per-output ``outputs``, ``min_top1_agreement``; default 1e-3 and 0.99), and ``task``'s agreement (a
    classifier's top-1 by default; per pixel for a segmenter; reproduced detections through a
    detector's post-processing).
    A spec or checkpoint is exported with zeros of ``input_shape`` and ``input_dtype`` (a checkpoint's own
    by default), a module with ``example_input``."""
    module, example, name = module_and_example(model, example_input, input_shape, _path(weights), input_dtype)
    shape, dtype = list(example.shape), dtype_name(example)
    out = export_onnx(module, example, Path(out), dynamic_batch=dynamic_batch, opset=opset)
    fixed_batch = onnx_input_dims(out)[0]
    inputs = parity_inputs(shape, None, samples=max(64 // shape[0], 1) * shape[0], dtype=dtype, model=module)
    task = build_task(task if isinstance(task, TaskConfig) else validate(TaskConfig, task or {}, "task"))
    limits = parity if isinstance(parity, ParityBudget) else validate(ParityBudget, parity or {}, "parity")
    try:
        result = check_parity(module, out, inputs, limits, task=task)
    except BaseException:  # a file parity could not judge is not shipped either
        out.unlink()
        raise
    if not result.passed:
        out.unlink()
    return Exported(name, out, shape, dtype, fixed_batch, result)


def profile(
    model: Model, *, example_input: torch.Tensor | None = None, input_shape: list[int] | None = None,
    target: str | dict | TargetConfig = "ort-cpu", batch_sizes: tuple[int, ...] = (1,),
    settings: ProfileSettings = ProfileSettings(), weights: str | Path | None = None,
    data: str | Dataset | DataLoader | None = None,
) -> Profile:
    """``model``'s latency on ``target`` in rounds: percentiles, robust CV, every sample (``spiralprune profile``).
    ``data``: its validation samples are fed when the graph's work depends on its inputs' values
    (``profile.settings["data_dependent_ops"]`` names what in it does), else seeded random inputs."""
    target = target_config(target)
    with tempfile.TemporaryDirectory(prefix="spiral-profile-") as work:
        prepared = prepare_model(model, Path(work), input_shape, weights=_path(weights), example=example_input)
        return profile_model(
            prepared.onnx_path, target.backend, batch_sizes=batch_sizes, threads=target.threads,
            precision=target.precision, settings=settings,
            inputs=data_feed(prepared.onnx_path, validation_set(data, prepared.input_shape)),
            backend_options={**target.backend_options(), **measured_options(prepared, target)},
        )


def compare(
    base: Model, new: Model, *, example_input: torch.Tensor | None = None, input_shape: list[int] | None = None,
    target: str | dict | TargetConfig = "ort-cpu", budget: LatencyBudget | dict = REGRESSION_BUDGET,
    settings: ProfileSettings = ProfileSettings(),
) -> ProfileComparison:
    """Is ``new`` slower than ``base``? Both loaded once on ``target`` and measured in alternating rounds
    with ``settings`` (its confidence is the verdict's), the latency ``budget``'s question
    "new <= (1 + max_regression_pct / 100) x base" judged on the per-round ratios (``spiralprune compare``):
    ``verdict`` is regression / no regression / improvement / inconclusive."""
    target = target_config(target)
    budget = regression_budget(budget)
    with tempfile.TemporaryDirectory(prefix="spiral-compare-") as work:
        models = {name: prepare_model(model, Path(work) / name, input_shape, example=example_input)
                  for name, model in ((BASE, base), (NEW, new))}
        batch = models[BASE].input_shape[0]
        question = regression_question(budget, batch)
        paired = profile_paired(
            {name: m.onnx_path for name, m in models.items()},
            Target(target.backend, batch, target.threads, target.precision, target.backend_options()),
            settings, [question], cache_dir=Path(work) / "compiled",
            model_options={name: measured_options(m, target) for name, m in models.items()},
        )
    return paired_comparison(paired.profiles[BASE], paired.profiles[NEW], {batch: paired.verdict(question.name)},
                             budget, settings)


def gate(
    model: Model, budget: GateBudget | dict | str | Path, *, target: str | dict | TargetConfig = "ort-cpu",
    baseline: Model | Release | None = None, data: str | Dataset | DataLoader | None = None,
    example_input: torch.Tensor | None = None, input_shape: list[int] | None = None, weights: str | Path | None = None,
) -> tuple[GateResult, GateContext]:
    """``model`` gated on ``budget`` (a gate budget file, or its keys as a dict) measured on ``target`` here
    (``spiralprune gate``): latency (judged on rounds paired with ``baseline`` when that is a model: the
    released one, measured beside it; or against a stored ``Release`` measured on the same target),
    accuracy on ``data``'s validation split (a data spec or a dataset), size and ONNX parity. The result's
    ``exit_code`` is the command's; the context is what the reports show."""
    budget = budget if isinstance(budget, GateBudget) else (
        parse_budget(budget, "budget") if isinstance(budget, dict) else load_budget(Path(budget)))
    backend = target if isinstance(target, str) else target.backend if isinstance(target, TargetConfig) else (
        target.get("backend"))
    if backend in ALIASES or backend in list_targets():
        raise InputError(f"'{backend}' is a device target: spiralprune gate measures on this machine with a backend "
                         f"({', '.join(BACKENDS)}); to measure on the device and gate there, run "
                         f"spiralprune deploy MODEL --target {backend}")
    target = target_config(target)
    stored = baseline if isinstance(baseline, Release) else None
    if stored is None and baseline is None and budget.needs_baseline:
        raise InputError(f"the budget's {', '.join(budget.needs_baseline)} compares against a baseline; "
                         "pass --baseline-model (the released model, measured here) or --baseline (a stored JSON)")
    if budget.quality is not None and data is None:
        raise InputError(f"the budget has a {budget.quality_metric().name} check; pass --data with the evaluation data")
    with tempfile.TemporaryDirectory(prefix="spiral-gate-") as work:
        candidate = prepare_model(model, Path(work) / CANDIDATE, input_shape, weights=_path(weights),
                                      example=example_input)
        onnx_path, shape = candidate.onnx_path, candidate.input_shape
        options = {CANDIDATE: measured_options(candidate, target)}
        released = None
        if baseline is not None and stored is None:
            release = prepare_model(baseline, Path(work) / BASELINE, shape, example=example_input)
            released, options[BASELINE] = release.onnx_path, measured_options(release, target)
        val_set = validation_set(data, shape)
        task = onnx_task(budget.task, onnx_path)
        parity = None
        if candidate.source is not None:
            limits = budget.parity or ParityBudget()
            parity = check_parity(
                candidate.source, onnx_path,
                parity_inputs(shape, val_set, limits.samples, dtype=candidate.input_dtype, model=candidate.source),
                limits, task=task,
            )
        compiled = Path(work) / "compiled"
        verdicts: dict[str, Verdict] = {}
        attribution = None
        feed = data_feed(onnx_path, val_set) or (data_feed(released, val_set) if released else None)
        if released is None:  # alone, as spiralprune profile measures (self-timing backends such as trtexec too)
            measured_profile = profile_model(
                onnx_path, target.backend, batch_sizes=(shape[0],), threads=target.threads,
                precision=target.precision, settings=budget.profile, cache_dir=compiled, inputs=feed,
                backend_options={**target.backend_options(), **options[CANDIDATE]})
        else:  # the released model beside the candidate, in the same rounds, until the questions are decided
            measured = profile_paired(
                {CANDIDATE: onnx_path, BASELINE: released},
                Target(target.backend, shape[0], target.threads, target.precision, target.backend_options()),
                budget.profile, latency_questions(budget, baseline_measured=True, batch=shape[0]), cache_dir=compiled,
                model_options=options, layers=(CANDIDATE, BASELINE) if target.backend in LAYER_BACKENDS else (),
                inputs=feed)
            measured_profile = measured.profiles[CANDIDATE]
            attribution = paired_attribution(measured.profiles[BASELINE], measured_profile,
                                             budget.latency.statistic if budget.latency else "p50",
                                             budget.profile.confidence)
            verdicts = {v.question.name: v for v in measured.verdicts}
            released_metrics = (evaluate_onnx(released, val_set, onnx_task(budget.task, released))
                                if val_set is not None else None)
            source = Path(baseline) if isinstance(baseline, (str, Path)) else Path(f"<{type(baseline).__name__}>")
            stored = Release(source.stem, source, measured.profiles[BASELINE], released_metrics, None)
        metrics = evaluate_onnx(onnx_path, val_set, task) if val_set is not None else None
        file = ModelFile.of(onnx_path)
    result = run_gate(
        budget, profile=measured_profile, baseline=stored.profile if stored else None, paired=released is not None,
        verdicts=verdicts, metrics=metrics, baseline_metrics=stored.metrics if stored else None,
        file=file, parity=parity, attribution=attribution,
    )
    name = str(model) if not isinstance(model, nn.Module) else f"the given {type(model).__name__}"
    metric = budget.quality_metric() if budget.quality is not None else build_task(budget.task).quality()
    return result, GateContext(name, target.backend, measured_profile, stored, metrics, file, parity, metric)


# ---- helpers ---------------------------------------------------------------------------------
def _spec_of(model: nn.Module | str) -> tuple[str, nn.Module | None]:
    if isinstance(model, nn.Module):
        return f"python:{type(model).__name__}", model
    if isinstance(model, (str, Path)):
        return str(model), None
    raise InputError(f"model must be a torch.nn.Module or a model spec, not {type(model).__name__}")


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _output_width(module: nn.Module, example: torch.Tensor) -> int:
    with torch.no_grad():
        output = module.eval()(example)
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise InputError("spiralprune.shrink: the model's output on example_input is not [batch, classes]; "
                         "pass num_classes")
    return int(output.shape[1])
