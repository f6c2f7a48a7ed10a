"""The spiral controller: prune → distill → export → profile → evaluate → accept or back off.

The loop asks each step for the final budget (``schedule.initial_reduction: final``, the default) or
for a latency reduction that decays (NetAdapt), backs off a rejected try
and stops at the final budget, ``max_steps``, ``patience`` or the training budget; each try is
``spiralprune.pipeline.step.Tries.attempt``. Then the last accepted model gets the final recovery (when the
try that ended the loop did not already train it) and, with ``quantize:``, the INT8 stage.

Every latency verdict is the judge's (``spiralprune.deploy.verdict``): the candidate, the current model and
the teacher are loaded once and measured in alternating rounds; the step budget is a question on
the per-round ratio to the current model, the final budget on the ratio to the teacher (and on the
candidate's own rounds for ``max_ms``). ``undecided`` after the time cap rejects the step.

State lives on disk so that a run killed at any point resumes where it stopped: the ledger says
which attempts finished; an attempt's working folder keeps its chosen plan and its distillation
checkpoints until the attempt is published with its ledger line.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from spiralprune.deploy.atomic import publish_dir, write_bytes
from spiralprune.kernels.layers import untimed_layers
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.acceptance import Evidence, Parity, QualityLimit, decide, format_value, passed, reason
from spiralprune.pipeline.budget import FinalBudget, final_summary, paired_speedup, quality_text
from spiralprune.pipeline.tasks import Metric
from spiralprune.pipeline.checkpoint import load_checkpoint, save_checkpoint
from spiralprune.pipeline.config import RunConfig, ScheduleConfig
from spiralprune.pipeline.data import DataSplits
from spiralprune.pipeline.int8 import Trainable, int8_model, judge_quantized
from spiralprune.pipeline.ledger import LedgerEntry, Training, append_entry
from spiralprune.pipeline.measure import latency_summary, target_of
from spiralprune.pipeline.plan_search import NothingLeftToPrune
from spiralprune.pipeline.prune import PruningPlan
from spiralprune.pipeline.prune.latency_aware import weighs_blocks
from spiralprune.pipeline.quantize import INT8
from spiralprune.pipeline.report.run import write_reports
from spiralprune.pipeline.report.run import met_budget
from spiralprune.pipeline.run_folder import RunFolder, last_accepted
from spiralprune.pipeline.step import Reference, Tries, probe_cost
from spiralprune.pipeline.teacher import RunData, load_teacher, measure_teacher
from spiralprune.pipeline.training import Trainee

# A final budget under this fraction of the predicted floor is out of pruning's reach: the floor is a
# prediction (the table's single operators, calibrated on the full teacher), so a budget near it is
# left to the steps and the judge.
FLOOR_MARGIN = 0.8


@dataclass
class SpiralOutcome:
    """What a finished run says: whether its result met the budget and why, the teacher's summary, the
    ledger's lines, the reports, and the line that names the result (``RunFolder.model_onnx`` and its
    checkpoint ``RunFolder.model``); ``budget`` is ``FinalBudget.to_dict``."""

    met_budget: bool
    message: str
    teacher: dict
    budget: dict
    entries: list[LedgerEntry] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)
    result: str = ""


class Spiral:
    """A run of ``config`` in ``out_dir``; ``data``, when given (``spiralprune.shrink``), replaces what
    ``config.data`` names."""

    def __init__(self, config: RunConfig, out_dir: Path, *, resume: bool = False, console: Console | None = None,
                 data: DataSplits | None = None):
        self.config = config
        self.given_data = data
        self.out = out_dir
        self.resume = resume
        self.console = console or Console(stderr=True)
        self.folder = RunFolder(out_dir)

    def _recover(self, last: LedgerEntry, teacher: Trainee, epochs: int, message: str, progress: Progress) -> None:
        """Train the last accepted model ``epochs`` more epochs from the teacher (its
        structure, hence its latency, stays as measured) and record it as the run's result when its
        accuracy is at least the step's; a killed recovery starts again from its checkpoint. Only a
        run that ended short of its final budget gets here: a try that meets it trains its recovery
        epochs in its own schedule."""
        work = self.folder.steps / ".recovery"
        student, meta = load_checkpoint(self.folder.of(last, "model"))
        progress.console.print(f"final recovery: {epochs} epochs of {last.name}")
        trained = self.tries.train(Trainee(student, (meta["base_spec"], meta["plans"])), teacher, epochs, work,
                                   progress)
        save_checkpoint(
            work / "model", base_spec=meta["base_spec"], plans=meta["plans"], model=student,
            input_shape=self.config.input_shape, input_dtype=self.data.input_dtype, metadata={"recovery_of": last.dir},
        )
        measurement = self.data.measure(student, work, self.config)
        shutil.copy2(self.folder.of(last, "profile.json"), work / "profile.json")
        metric = self.data.task.quality(self.config.budget.quality.name)
        checks = decide(Evidence(metrics=measurement.metrics, parity=measurement.parity),
                        [QualityLimit(metric.shown(last.metrics, "the final recovery", last.name), metric,
                                      name=f"{metric.name}.{metric.bound}", label=f"{last.name}'s"), Parity()])
        why = f"after {trained.epochs} more epochs: {reason(checks)}"
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = self.folder.steps / "recovery"
        publish_dir(work, final)
        entry = last.model_copy(update={  # the structure and its latency verdicts are the last step's
            "kind": "recovery", "dir": str(final.relative_to(self.out)), "distill": trained, "accepted": passed(checks),
            "reason": why, "checks": [c.to_dict() for c in checks], "message": message, "reduction": None, "predicted_ms": None, "candidates": [],
            "probes": [], "predictor": None, "predicted_layers": {}, "compiles": None, **measurement.summary(),
        })
        append_entry(self.folder.ledger, entry)
        progress.console.print(f"final recovery: {'accepted' if entry.accepted else 'rejected'}: {why}")

    def _quantize(self, last: LedgerEntry, teacher: nn.Module, budget: FinalBudget, message: str, progress: Progress) -> None:
        """The final INT8 stage: the result's ONNX model quantized on training batches (some
        operators kept float, or the model recovered from the teacher through simulated INT8, when
        that loses too much: ``spiralprune.pipeline.int8``), measured beside it and the teacher, and accepted only when
        the judge grants the speedup over the float model, the accuracy drop is within
        ``quantize.max_drop`` and the floor holds. A rejected one leaves the float model as the
        result (the ledger line says why). A killed stage starts again from the float model. Its
        quantization-aware recovery trains in this process whatever ``distributed:`` says: the module it
        trains carries simulated-INT8 parametrizations and hooks, which no job file can carry
        (``spiralprune.pipeline.training``)."""
        cfg, q = self.config, self.config.quantize
        work = self.folder.steps / ".quantize"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        float_onnx = self.folder.of(last, "model.onnx")
        progress.console.print(f"quantize: INT8 ({q.method}, {q.calibration_batches} calibration batches) of {last.name}")
        trainable = Trainable(load_checkpoint(self.folder.of(last, "model"))[0], teacher, self.data.example_input,
                              cfg.distill, progress)
        made = int8_model(float_onnx, work / "model.onnx", self.data.splits.calibration, self.data.splits.val,
                          self.data.task, q, trainable)
        for remedy in made.reasons:
            progress.console.print(f"quantize: {remedy}")
        finals = tuple(dataclasses.replace(question, subject=INT8) for question in budget.final_questions())
        result = judge_quantized(
            float_onnx, work / "model.onnx", target_of(cfg), cfg.target.profile, made, q, cache_dir=self.folder.compiled,
            others={"teacher": self.folder.teacher_onnx}, questions=finals,
            rules=(budget.quality_rule(),), metric=budget.metric,
        )
        result.paired.profiles[INT8].save(work / "profile.json")
        final = self.folder.steps / "quantize"
        publish_dir(work, final)
        verdicts = [result.paired.verdict(question.name) for question in finals]
        entry = last.model_copy(update={  # the structure is the float model's; the rest is the INT8 model's
            "kind": "quantize", "dir": str(final.relative_to(self.out)), "quantize_of": last.dir,
            "verdicts": [result.paired.verdict("int8 vs float").to_dict(), *(v.to_dict() for v in verdicts)],
            "meets_final": all(v.meets for v in verdicts), "measure_s": result.paired.rounds.wall_s,
            "distill": Training(best_val_quality=None, epochs=0), "accepted": result.accepted,
            "reason": result.reason, "checks": [c.to_dict() for c in result.checks], "quantize": result.to_dict(),
            "message": message, "quality": result.accuracy[INT8] / budget.metric.scale,
            "metrics": {budget.metric.name: result.accuracy[INT8] / budget.metric.scale},
            "size_mb": result.size_mb[INT8], "parity": None,
            "reduction": None, "predicted_ms": None, "candidates": [], "probes": [], "predictor": None,
            "predicted_layers": {}, "compiles": None, **paired_speedup(result.paired, budget.statistic, subject=INT8),
            **latency_summary(result.paired.profiles[INT8], budget.statistic),
        })
        append_entry(self.folder.ledger, entry)
        verdict = "accepted" if entry.accepted else "rejected: the float model stays the result"
        progress.console.print(f"quantize: {verdict}: {entry.reason}")

    def _below_floor(self, teacher: nn.Module, budget: FinalBudget) -> str | None:
        """Why no step is taken, when the final budget is below what pruning can reach here.

        The floor is the predicted latency of the teacher with every group the config lets shrink
        cut to its fewest channels (and, when the knapsack may remove them, every residual block
        gone; ``PrunableModel.floor_plan``), calibrated on the teacher's
        measured latency: what is left is the per-operator cost of the backend at this batch. A
        budget under ``FLOOR_MARGIN`` times it cannot be met by removing channels, so the run stops
        before spending steps (exit 1). A model the operator table cannot time is not checked."""
        cfg = self.config
        if not cfg.schedule.stop_at_floor or untimed_layers(teacher):
            return None
        prunable = self.tries.prunable(teacher)
        full = prunable.layers(PruningPlan(cfg.prune.criterion, 0.0, ()))
        predictor = LatencyPredictor(self.tries.predictor.table)
        predictor.calibrate([(full, budget.teacher_ms)])
        blocks = cfg.schedule.allocation == "latency" and weighs_blocks(cfg.prune, cfg.schedule.remove_blocks)
        floor_ms = predictor.predict(prunable.layers(prunable.floor_plan(cfg.prune, blocks=blocks)))
        if budget.final_ms >= FLOOR_MARGIN * floor_ms:
            return None
        helps = "a larger batch, lower precision (a quantize: stage, or fp16/bf16)"
        if cfg.target.backend in ("torch", "torch-compile"):
            helps += ", CUDA graphs (torch-compile, compile_mode: reduce-overhead)"
        return (
            f"the final budget ({budget.final_ms:.3f} ms) is below what pruning can reach on {cfg.target.backend} "
            f"at batch {cfg.input_shape[0]}: with every prunable group at its fewest channels the model is "
            f"predicted at {floor_ms:.3f} ms ({budget.teacher_ms / floor_ms:.2f}x the teacher), the cost of its "
            f"{len(full)} operators themselves; no step was taken. What would help: {helps}, or a looser budget"
        )

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> SpiralOutcome:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.data = RunData.load(cfg, self.given_data)  # before the folder is written: bad data writes nothing
        self.folder.start(self.config.model_dump(mode="json"), resume=self.resume)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=self.console, transient=False,
        ) as progress:
            teacher, base_spec, plans = load_teacher(cfg, self.folder, self.data, self.console, progress)
            progress.console.print("teacher: exporting and profiling on", cfg.target.backend)
            teacher_summary = measure_teacher(teacher, cfg, self.folder, self.data)
            budget = FinalBudget.of_teacher(cfg, teacher_summary, self.data.task)
            progress.console.print(
                f"teacher: {budget.statistic} {budget.teacher_ms:.3f} ms, {budget.metric.name} "
                f"{format_value(budget.teacher_quality, budget.metric.unit)}; final budget: {budget.describe()}"
            )
            table = LatencyTable(cfg.target.backend, threads=cfg.target.threads, precision=cfg.target.precision,
                                 options=cfg.target.backend_options())
            self.tries = Tries(cfg, self.folder, self.data, LatencyPredictor(table), self.console)
            entries = self.folder.entries()
            current = Reference("teacher", teacher, self.folder.teacher_onnx, budget.teacher_ms,
                                (base_spec, plans))
            last = last_accepted(entries, with_checkpoint=True)  # a module to go on from
            if last is not None:
                model, meta = load_checkpoint(self.folder.of(last, "model"))
                current = Reference("current", model, self.folder.of(last, "model.onnx"), last.statistic_ms,
                                    (meta["base_spec"], meta["plans"]))
            task = progress.add_task("spiral steps", total=cfg.schedule.max_steps, completed=sum(e.accepted for e in entries))
            trainee = Trainee(teacher, (base_spec, plans))
            message = (None if entries else self._below_floor(teacher, budget)) or self._loop(
                entries, current, trainee, budget, progress, task)
            entries = self.folder.entries()
            last = last_accepted(entries)
            total = cfg.schedule.total_epochs
            epochs = cfg.schedule.final_epochs if total is None else total - epochs_spent(entries)
            if (epochs > 0 and last is not None and not last.meets_final
                    and not any(e.kind in ("recovery", "quantize") for e in entries)):
                self._recover(last, trainee, epochs, message, progress)
                entries = self.folder.entries()
            last = last_accepted(entries)
            if cfg.quantize is not None and last is not None and not any(e.kind == "quantize" for e in entries):
                self._quantize(last, teacher, budget, message, progress)
        entries = self.folder.entries()
        for e in entries:
            if e.kind in ("recovery", "quantize"):
                message = f"{message}; {e.name} {'accepted' if e.accepted else 'rejected'}: {e.reason}"
        report_paths = write_reports(self.out, cfg, budget.to_dict(), teacher_summary, entries, message)
        last = last_accepted(entries)
        self._publish_result(entries, teacher, base_spec, plans)
        return SpiralOutcome(met_budget(last), message, teacher_summary, budget.to_dict(), entries, report_paths,
                             result_line(self.folder, last, budget.metric))

    def _publish_result(self, entries: list[LedgerEntry], teacher: nn.Module, base_spec: str, plans: list) -> None:
        """The result's ONNX file and checkpoint copied to the run folder's root, each whole or not at all:
        the last accepted line's (its INT8 model, with the float checkpoint it was quantized from), else
        the teacher's (a teacher the run did not train is saved from its module)."""
        onnx = self.folder.result_onnx()
        write_bytes(self.folder.model_onnx, onnx.read_bytes())
        last = last_accepted(entries, with_checkpoint=True)
        source = self.folder.of(last, "model") if last else self.folder.teacher_checkpoint()
        if not source.is_dir():
            save_checkpoint(self.folder.model, base_spec=base_spec, plans=plans, model=teacher,
                            input_shape=self.config.input_shape, input_dtype=self.data.input_dtype)
            return
        work = self.folder.root / ".model"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        publish_dir(work, self.folder.model)

    def _loop(
        self, entries: list[LedgerEntry], current: Reference, teacher: Trainee, budget: FinalBudget, progress: Progress, task: int,
    ) -> str:
        schedule = self.config.schedule
        entries = list(entries)
        ended = [e for e in entries if e.kind in ("recovery", "quantize")]
        if ended:  # the loop had ended before the final recovery or quantization
            return ended[0].message
        step = 1 + sum(e.accepted for e in entries)
        attempt = 1 + sum(1 for e in entries if e.step == step)
        last = last_accepted(entries)
        while True:
            if last is not None and last.meets_final:
                asked = budget.teacher_ms / budget.final_ms
                return (f"final budget met: {final_summary(last, budget.metric)}; the budget asked for {asked:.2f}x "
                        f"({last.speedup / asked - 1:+.0%} past it)")
            if step > schedule.max_steps:
                return f"stopped after max_steps={schedule.max_steps}"
            if attempt > schedule.patience + 1:
                return f"step {step} rejected {attempt - 1} times (patience {schedule.patience})"
            epochs, recovery_epochs = self.config.distill.epochs, schedule.final_epochs
            if schedule.total_epochs is not None:  # the final recovery's share is never spent on tries
                left = schedule.total_epochs - epochs_spent(entries)
                epochs = min(epochs, left - schedule.final_epochs)
                if epochs < 1:
                    return (f"the tries spent the training budget (total_epochs={schedule.total_epochs}, "
                            f"{schedule.final_epochs} kept for the final recovery)")
                recovery_epochs = left - epochs
            reduction = step_reduction(schedule, step, attempt, current.ms, budget.final_ms)
            try:
                entry, student, plan = self.tries.attempt(step, attempt, reduction, epochs, recovery_epochs,
                                                          current, teacher, budget, progress)
            except NothingLeftToPrune as stop:
                return f"step {step}: {stop}"
            verdict = "accepted" if entry.accepted else "rejected"
            progress.console.print(f"step {step} try {attempt}: {verdict}: {entry.reason}")
            entries.append(entry)
            if entry.accepted:
                current = Reference("current", student, self.folder.of(entry, "model.onnx"), entry.statistic_ms,
                                    (current.lineage[0], [*current.lineage[1], plan]))
                last = entry
                step, attempt = step + 1, 1
                progress.advance(task)
            else:
                attempt += 1


def result_line(folder: RunFolder, last: LedgerEntry | None, metric: Metric) -> str:
    """``result: runs/x/model.onnx (...), checkpoint runs/x/model/``: the last thing a run prints."""
    what = (f"{last.name}, {last.speedup:.2f}x the teacher at {quality_text(last, metric)}"
            if last is not None else "the teacher, unchanged: no step was accepted")
    return f"result: {folder.model_onnx} ({what}); checkpoint {folder.model}/"


def step_reduction(schedule: ScheduleConfig, step: int, attempt: int, current_ms: float, final_ms: float) -> float:
    """The fraction of ``current_ms`` try ``attempt`` of ``step`` asks to remove: NetAdapt's decaying
    ``initial_reduction``, or with ``final`` what the final budget needs; backed off per rejected try."""
    if schedule.initial_reduction == "final":
        wanted = max(1 - final_ms / current_ms, 0.0)
    else:
        wanted = schedule.initial_reduction * schedule.decay ** (step - 1)
    return wanted * schedule.backoff ** (attempt - 1)


def epochs_spent(entries: list[LedgerEntry]) -> int:
    """The training epochs the ledger's lines spent (every try, its probes and the recovery)."""
    return sum(e.distill.epochs + probe_cost(e.probes) for e in entries)
