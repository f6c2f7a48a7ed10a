"""The INT8 model of a float model, made and judged like any step.

``int8_model`` makes it, through as many of three steps as it takes:

1. Post-training static INT8 (``spiralprune.pipeline.passes.int8.quantize``), calibrated on training batches.
2. When it loses more than ``max_drop`` validation points: the float fallback
   (``spiralprune.pipeline.passes.int8.float_fallback``), a few of the most sensitive operators kept float. It trains
   nothing and, on MobileNetV2 with per-tensor weights, gave back more than recovery did (docs/benchmarks.md).
3. When that still loses too much and the PyTorch model is at hand: quantization-aware recovery
   (``spiralprune.pipeline.passes.int8.fake_quant``), the trained model exported, quantized again on the same
   calibration samples (with the fallback again when it needs it) and kept when more accurate.

``judge_quantized`` then measures the model left beside the float model in rounds on the target and
decides (``spiralprune.pipeline.acceptance``): it is accepted only when the judge says it meets the speedup
over the float model and its accuracy drop, always counted against the float model given (not a
recovered one), is within ``max_drop`` (and any rule of the caller's holds: the run's floor). A
rejected quantization leaves the float model as the result, and the reason says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import LAYER_BACKENDS
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.profiler import MeasuringSession, Paired
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.verdict import Question
from spiralprune.pipeline.acceptance import Check, Evidence, Latency, Rule, budget_rules, decide, passed, reason
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.passes.int8.config import QUANTIZED_BACKENDS, QuantizeConfig
from spiralprune.pipeline.passes.int8.fake_quant import recover
from spiralprune.pipeline.passes.int8.float_fallback import Fallback, float_fallback
from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8, calibration_batches, quantize_onnx, validation_accuracy
from spiralprune.pipeline.tasks import Metric, Task

if TYPE_CHECKING:
    from rich.progress import Progress

# Beside the INT8 model: the float model quantization-aware recovery trained (kept when its INT8 model
# is the one left), and that INT8 model until it is compared.
RECOVERED, RECOVERED_INT8 = "recovered.onnx", "recovered.int8.onnx"


@dataclass
class Trainable:
    """What quantization-aware recovery trains: the PyTorch model the float ONNX model was exported
    from, the teacher that teaches it (the run's, or the float model itself), an example input to
    export it with, and the distillation settings it borrows (batch size, optimizer, temperature, seed)."""

    model: nn.Module
    teacher: nn.Module
    example_input: Tensor
    distill: DistillConfig
    progress: Progress | None = None


@dataclass(frozen=True)
class Int8Model:
    """What ``int8_model`` left at its ``out`` path and how: both models' validation accuracy (%), the
    calibration batches and the seconds quantization took, the remedies' records (None: not run; the
    fallback's is that of the model left) and what happened, in order."""

    accuracy: dict[str, float]
    batches: int
    calibration_s: float
    recovery: dict | None
    fallback: Fallback | None
    reasons: tuple[str, ...]


def _recover(out: Path, trainable: Trainable, batches: list[np.ndarray], train_set: Dataset, val_set: Dataset,
             task: Task, cfg: QuantizeConfig, before: dict[str, float],
             ) -> tuple[dict, Fallback | None, dict[str, float], float]:
    """Quantization-aware recovery of ``trainable``: its model exported beside ``out``, quantized there
    (with the float fallback when that loses too much), and kept (``out`` replaced) only when that
    INT8 model is more accurate than the one at ``out``, whose accuracy (%) is ``before``. Returns
    the record, the recovered model's fallback and accuracy, and the seconds quantization took."""
    start = time.perf_counter()
    model, trained = recover(trainable.model, trainable.teacher, train_set, val_set,
                             [torch.from_numpy(b).to(trainable.example_input.dtype) for b in batches], cfg,
                             trainable.distill, trainable.progress, task)
    record = {"epochs": trained.epochs_run, "lr": cfg.recovery_lr, "before": before[INT8], "accuracy": None,
              "with_fallback": None, "float_accuracy": None, "kept": False}
    fallback, accuracy, seconds = None, before, 0.0
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        outcome = "diverged (weights not finite)"
    else:
        recovered, recovered_int8 = out.parent / RECOVERED, out.parent / RECOVERED_INT8
        export_onnx(model, trainable.example_input, recovered)
        seconds = quantize_onnx(recovered, recovered_int8, batches, cfg)
        after = validation_accuracy({FLOAT: recovered, INT8: recovered_int8}, val_set, task)
        fallback, accuracy = float_fallback(recovered, recovered_int8, batches, train_set, val_set, task, cfg,
                                            {FLOAT: before[FLOAT], INT8: after[INT8]})
        m = task.quality()
        record.update(accuracy=after[INT8], float_accuracy=after[FLOAT], kept=m.worse_by(accuracy[INT8], before[INT8]) < 0,
                      with_fallback=accuracy[INT8] if fallback is not None and fallback.nodes else None)
        outcome = f"INT8 {after[INT8]:.2f}{m.unit}" + (f", {accuracy[INT8]:.2f}{m.unit} with the float fallback"
                                                        if record["with_fallback"] is not None else "")
        if record["kept"]:
            recovered_int8.replace(out)
        else:
            recovered_int8.unlink()
            recovered.unlink()
    record["seconds"] = time.perf_counter() - start
    record["reason"] = (f"quantization-aware recovery ({trained.epochs_run} epochs at lr {cfg.recovery_lr:g}): {outcome}"
                        + (": its model is the one judged" if record["kept"] else ", no better: the model before it stays"))
    return record, fallback, accuracy, seconds


def int8_model(
    float_onnx: Path, out: Path, train_set: Dataset, val_set: Dataset, task: Task, cfg: QuantizeConfig,
    trainable: Trainable | None,
) -> Int8Model:
    """The INT8 model of ``float_onnx`` written to ``out``, through as many of the three steps as it takes.

    ``trainable`` None (an ``.onnx`` file given as is) skips recovery and says so when it was needed."""
    batches = calibration_batches(train_set, float_onnx, cfg)
    seconds = quantize_onnx(float_onnx, out, batches, cfg)
    accuracy = validation_accuracy({FLOAT: float_onnx, INT8: out}, val_set, task)
    fallback, accuracy = float_fallback(float_onnx, out, batches, train_set, val_set, task, cfg, accuracy)
    reasons = [] if fallback is None else [fallback.reason]
    recovery = None
    m = task.quality()
    drop = m.worse_by(accuracy[INT8], accuracy[FLOAT])
    if drop > cfg.max_drop and cfg.recovery_epochs > 0 and task.has_logits:
        trigger = (f"INT8 {accuracy[INT8]:.2f}{m.unit}{' with the float fallback' if fallback and fallback.nodes else ''}"
                   f", {m.worse_text(drop)} float (max_drop {cfg.max_drop:g}); ")
        if trainable is None:
            recovery = {"kept": False, "reason": "quantization-aware recovery needs the PyTorch model (a model spec "
                                                 "or spiral checkpoint), not an .onnx file; not run"}
        else:
            recovery, recovered_fallback, recovered_accuracy, spent = _recover(
                out, trainable, batches, train_set, val_set, task, cfg, accuracy)
            seconds += spent
            if recovery["kept"]:
                fallback, accuracy = recovered_fallback, recovered_accuracy
        recovery["reason"] = trigger + recovery["reason"]
        reasons.append(recovery["reason"])
        if recovery["kept"] and fallback is not None:
            reasons.append(fallback.reason)
    return Int8Model(accuracy, len(batches), seconds, recovery, fallback, tuple(reasons))


@dataclass(frozen=True)
class QuantizeResult:
    accepted: bool
    reason: str
    checks: list[Check]
    paired: Paired
    accuracy: dict[str, float]
    size_mb: dict[str, float]
    calibration_s: float
    recovery: dict | None  # quantization-aware recovery's record; "kept": the judged INT8 model is the recovered one's
    fallback: dict | None  # the float fallback's to_dict() for the judged model: it keeps these nodes float
    # the measuring session's loads (``spiralprune.deploy.profiler.MeasuringSession.compiles``): the teacher's and
    # the float model's compiled files come from the run's cache, the INT8 model is built now; in a run, the
    # compiled files evicted once it was judged too
    compiles: dict[str, int | float]

    def to_dict(self) -> dict:
        verdict = self.paired.verdict("int8 vs float")
        return {
            "accepted": self.accepted, "reason": self.reason, "checks": [c.to_dict() for c in self.checks],
            "verdict": verdict.to_dict(),
            "speedup": 1 / verdict.estimate, "speedup_ci": [1 / verdict.high, 1 / verdict.low],
            "p50_ms": {name: self.paired.profiles[name].stat("p50") for name in (FLOAT, INT8)},
            "accuracy": self.accuracy, "size_mb": self.size_mb, "calibration_s": self.calibration_s,
            "recovery": self.recovery, "fallback": self.fallback, "compiles": self.compiles,
        }


def judge_quantized(
    float_path: Path, int8_path: Path, session: MeasuringSession, settings: ProfileSettings, made: Int8Model,
    cfg: QuantizeConfig, *, others: dict[str, Path] | None = None,
    questions: tuple[Question, ...] = (), rules: tuple[Rule, ...] = (), metric: Metric = Metric(),
) -> QuantizeResult:
    """The INT8 model beside its float model in rounds in ``session`` (the caller's: a run evicts from its
    compiled files what it will not measure again once the session is closed): accepted or not, and why. ``made``: how
    ``spiralprune.pipeline.passes.int8.model.int8_model`` made ``int8_path`` (both models' validation accuracy, the
    remedies it ran: their reasons are appended to the result's, their records reported with it).

    ``others`` are measured in the same rounds (the spiral's teacher) to answer ``questions`` of
    the INT8 model (its final budget); they do not decide acceptance here. ``rules`` are decided with
    the speedup and the drop (on the INT8 model's accuracy)."""
    backend = session.target.backend
    if backend not in QUANTIZED_BACKENDS:
        raise InputError(f"INT8 QDQ models run on {', '.join(QUANTIZED_BACKENDS)}, not '{backend}'")
    question = Question("int8 vs float", INT8, 1 / cfg.min_speedup, FLOAT, cfg.budget.latency.statistic)
    paired = session.paired({FLOAT: float_path, INT8: int8_path, **(others or {})}, settings,
                            [question, *questions], layers=(INT8,) if backend in LAYER_BACKENDS else ())
    accuracy = made.accuracy
    evidence = Evidence({question.name: paired.verdict(question.name)}, {metric.name: accuracy[INT8] / metric.scale},
                        {metric.name: accuracy[FLOAT] / metric.scale}, file=ModelFile.of(int8_path))
    own = budget_rules(cfg.budget, metric, latency=[Latency(question)], reference="float model")
    checks = decide(evidence, [*own, *rules])
    size = {name: path.stat().st_size / 1e6 for name, path in ((FLOAT, float_path), (INT8, int8_path))}
    return QuantizeResult(passed(checks), "; ".join([reason(checks), *made.reasons]), checks, paired, accuracy, size,
                          made.calibration_s, made.recovery, None if made.fallback is None else made.fallback.to_dict(),
                          dict(session.compiles))
