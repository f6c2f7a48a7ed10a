"""The spiral controller: prune → distill → export → profile → evaluate → accept or back off.

Every latency verdict is the judge's (``deploy.verdict``): the candidate, the current model and
the teacher are loaded once and measured in alternating rounds; the step budget is a question on
the per-round ratio to the current model, the final budget on the ratio to the teacher (and on the
candidate's own rounds for ``max_ms``). ``undecided`` after the time cap rejects the step. A
candidate is measured when its plan is screened, before it is distilled (its graph, hence its
latency, does not change with training), so a try the judge rejects spends no training epochs.

State lives on disk so that a run killed at any point resumes where it stopped: the ledger says
which attempts finished; an attempt's working folder keeps its chosen plan and its distillation
checkpoints until the attempt is published with its ledger line.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader

from deploy.atomic import publish_dir, write_json
from deploy.errors import InputError
from deploy.profiler import Paired
from deploy.validation import contained
from deploy.verdict import Question, interval, percent
from kernels.layers import untimed_layers
from kernels.predictor import LatencyPredictor
from kernels.table import LatencyTable
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import RunConfig
from pipeline.data import load_datasets
from pipeline.distill.train import distill
from pipeline.export import export_onnx
from pipeline.ledger import append_entry, repair_ledger
from pipeline.measure import (
    CandidateMeasurement, latency_summary, measure_candidate, measure_paired, profile_on_target, target_of,
)
from pipeline.plan_search import NothingLeftToPrune, PlanChoice, choose_plan
from pipeline.prune import PrunableModel, PruningPlan, apply_plan, dtype_name, original_channels
from pipeline.quantize import INT8, calibration_batches, judge_quantized, quantize_onnx
from pipeline.report import write_reports
from pipeline.report.run import entry_name, met_budget
from pipeline.run_folder import RunFolder, last_accepted
from pipeline.source import load_source

MAX_CONFIG_BYTES = 1 << 20  # a run's config.json takes a few kB
# A final budget under this fraction of the predicted floor is out of pruning's reach: the floor is a
# prediction (the table's single operators, calibrated on the full teacher), so a budget near it is
# left to the steps and the judge.
FLOOR_MARGIN = 0.8


@dataclass(frozen=True)
class Budget:
    """The final budget: a speedup over the teacher and/or an absolute latency, and an accuracy floor.

    Both latency parts are questions to the judge (``deploy.verdict``), asked of every candidate
    measured in rounds beside the teacher. ``final_ms`` is only the planning figure the schedule
    and the predictor aim at, from the teacher measured alone when the run started.
    """

    statistic: str
    teacher_ms: float
    min_speedup: float | None
    max_ms: float | None
    teacher_accuracy: float
    accuracy_floor: float

    @property
    def final_ms(self) -> float:
        return min(v for v in (self.max_ms, self.teacher_ms / self.min_speedup if self.min_speedup else None) if v)

    def final_questions(self) -> list[Question]:
        questions = []
        if self.min_speedup is not None:
            questions.append(Question("final speedup", "candidate", 1 / self.min_speedup, "teacher", self.statistic))
        if self.max_ms is not None:
            questions.append(Question("final max_ms", "candidate", self.max_ms, None, self.statistic))
        return questions

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(f"{self.statistic} speedup >= {self.min_speedup:.2f}x over the teacher, measured paired")
        if self.max_ms is not None:
            parts.append(f"{self.statistic} <= {self.max_ms:.3f} ms (upper confidence bound)")
        return " and ".join(parts) + f", accuracy >= {self.accuracy_floor:.2f}% (teacher {self.teacher_accuracy:.2f}%)"

    def to_dict(self) -> dict:
        return {**self.__dict__, "final_ms": self.final_ms, "final": self.describe()}


@dataclass(frozen=True)
class Reference:
    """The model a step starts from: its name in paired measurements, module, ONNX file, latency and lineage."""

    name: str
    model: nn.Module
    onnx: Path
    ms: float
    lineage: tuple[str, list]


@dataclass
class SpiralOutcome:
    met_budget: bool
    message: str
    teacher: dict
    entries: list[dict] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)


def config_digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Spiral:
    def __init__(self, config: RunConfig, out_dir: Path, *, resume: bool = False, console: Console | None = None):
        self.config = config
        self.out = out_dir
        self.resume = resume
        self.console = console or Console(stderr=True)
        self.folder = RunFolder(out_dir)
        self._traced: tuple[nn.Module, PrunableModel] | None = None

    # ---- setup -------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        config_path = self.folder.config
        data = self.config.model_dump(mode="json")
        if self.folder.ledger.exists() or config_path.exists():
            if not self.resume:
                raise InputError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
            contained(self.out, config_path.name, "run folder:")
            try:
                if config_path.stat().st_size > MAX_CONFIG_BYTES:
                    raise ValueError(f"larger than {MAX_CONFIG_BYTES >> 10} KiB")
                stored = json.loads(config_path.read_text())
            except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise InputError(f"{config_path} is not a spiral run config ({exc})") from None
            if not isinstance(stored, dict):
                raise InputError(f"{config_path} is not a spiral run config (not a JSON object)")
            if config_digest(stored) != config_digest(data):
                raise InputError(f"{self.out} was started with a different config; --resume needs the same one")
        elif self.resume and self.out.exists() and any(self.out.iterdir()):
            raise InputError(f"{self.out} holds no spiral run to resume")
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(config_path, data)
        repair_ledger(self.folder.ledger)

    def _load_data(self) -> None:
        cfg = self.config
        self.train_set, self.val_set = load_datasets(cfg.data.source, cfg.input_shape, seed=cfg.data.seed)
        if len(self.val_set) == 0 or len(self.train_set) == 0:
            raise InputError(f"data '{cfg.data.source}' has an empty train or validation split")
        batch = cfg.input_shape[0]
        loader = DataLoader(self.val_set, batch_size=max(batch, cfg.parity.samples), shuffle=False)
        inputs = next(iter(loader))[0]
        self.example_input = inputs[:batch]
        self.input_dtype = dtype_name(inputs)
        self.parity_inputs = inputs[: cfg.parity.samples]
        if list(self.example_input.shape[1:]) != cfg.input_shape[1:]:
            raise InputError(
                f"input_shape {cfg.input_shape} does not match the data's samples {list(inputs.shape[1:])}"
            )
        self.calibration = [b for _, b in zip(range(4), DataLoader(self.train_set, batch_size=cfg.data.batch_size))]

    def _check_model(self, model: nn.Module, spec: str) -> None:
        try:
            with torch.no_grad():
                out = model.eval()(self.example_input)
        except Exception as exc:  # any failure here means the input shape or model is wrong
            raise InputError(f"model '{spec}' does not accept input_shape {self.config.input_shape}: {exc}") from None
        if out.ndim != 2 or out.shape[1] != self.config.num_classes:
            raise InputError(
                f"model '{spec}' outputs shape {list(out.shape)}; expected [batch, num_classes={self.config.num_classes}]"
            )

    def _teacher(self, progress: Progress) -> tuple[nn.Module, str, list]:
        cfg = self.config
        if cfg.teacher_training is None:
            source = load_source(cfg.model)
            self._check_model(source.module, cfg.model)
            return source.module, source.base_spec, source.plans
        key = config_digest(
            {
                "model": cfg.model,
                "data": cfg.data.model_dump(),
                "input_shape": cfg.input_shape,
                "training": cfg.teacher_training.model_dump(mode="json"),
            }
        )
        directory = self.folder.teacher_checkpoint()
        if directory.exists():
            model, meta = load_checkpoint(directory)
            if meta.get("metadata", {}).get("training_key") == key:
                self.console.print(f"teacher: reusing the trained teacher in {directory}")
                return model, meta["base_spec"], meta["plans"]
        source = load_source(cfg.model)
        model, base_spec, plans = source.module, source.base_spec, source.plans
        self._check_model(model, cfg.model)
        self.console.print(f"teacher: training {cfg.model} on {cfg.data.source} ({cfg.teacher_training.epochs} epochs)")
        result = distill(
            model,
            None,
            self.train_set,
            self.val_set,
            cfg.teacher_training,
            checkpoint_dir=self.folder.teacher / "training",
            progress=progress,
        )
        save_checkpoint(
            directory,
            base_spec=base_spec,
            plans=plans,
            model=model,
            input_shape=cfg.input_shape, input_dtype=self.input_dtype,
            metadata={"training_key": key, "val_accuracy": result.best_val_accuracy},
        )
        shutil.rmtree(self.folder.teacher / "training", ignore_errors=True)
        return model, base_spec, plans

    def _measure_teacher(self, teacher: nn.Module) -> dict:
        """The teacher is measured once per run; a resumed run keeps the same budgets."""
        summary_path = self.folder.teacher / "summary.json"
        if summary_path.exists():
            return json.loads(summary_path.read_text())
        work = self.folder.teacher / ".measure"
        shutil.rmtree(work, ignore_errors=True)
        measurement = self._measure(teacher, work)
        profile = profile_on_target(measurement.onnx_path, teacher, self.config, work / "compiled")
        profile.save(work / "profile.json")
        summary = {**latency_summary(profile, self.config.budget.statistic), **measurement.summary()}
        for name in ("model.onnx", "profile.json", "eval.json"):
            (work / name).replace(self.folder.teacher / name)
        shutil.rmtree(work, ignore_errors=True)
        write_json(summary_path, summary)
        return summary

    def _budget(self, teacher: dict) -> Budget:
        b = self.config.budget
        accuracy = 100 * teacher["accuracy"]
        floors = [v for v in (b.accuracy.min, accuracy - b.accuracy.max_drop if b.accuracy.max_drop is not None else None) if v is not None]
        return Budget(b.statistic, teacher["statistic_ms"], b.min_speedup, b.max_ms, accuracy, max(floors))

    def _measure(self, model: nn.Module, directory: Path) -> CandidateMeasurement:
        return measure_candidate(
            model,
            directory,
            config=self.config,
            example_input=self.example_input,
            parity_inputs=self.parity_inputs,
            val_set=self.val_set,
        )

    # ---- one attempt -------------------------------------------------------------------
    def _measure_latency(
        self, candidate: nn.Module, work: Path, questions: list[Question], current: Reference, teacher: nn.Module
    ) -> Paired:
        """``candidate`` in rounds beside the current model and the teacher, every question judged.

        A candidate is measured before it is distilled: training changes its weights, not its
        graph, so the verdicts hold for the distilled model and no epoch is spent on a structure
        the judge rejects."""
        path = export_onnx(candidate, self.example_input, work / "candidate.onnx")
        models = {"candidate": (path, candidate), "teacher": (self.folder.teacher_onnx, teacher),
                  current.name: (current.onnx, current.model)}
        paired = measure_paired(models, self.config, questions, work / "compiled")
        shutil.rmtree(work / "compiled", ignore_errors=True)
        path.unlink()
        return paired

    def _choose_plan(
        self, step: Question, questions: list[Question], final_step: bool, current: Reference, teacher: nn.Module,
        work: Path,
    ) -> tuple[PlanChoice, dict[tuple, tuple[nn.Module, Paired]]]:
        """The step's plan, and each measured plan's pruned module with its paired session (the
        chosen one is distilled as it is, not pruned again). A plan meets when the judge says it
        meets the step budget and, on the step that aims at the final budget, the final budget too."""
        measured: dict[tuple, tuple[nn.Module, Paired]] = {}

        def measure(plan: PruningPlan) -> tuple[float, bool]:
            candidate = apply_plan(copy.deepcopy(current.model), plan, self.example_input)
            paired = self._measure_latency(candidate, work, questions, current, teacher)
            measured[plan.groups] = (candidate, paired)
            return paired.verdict(step.name).estimate * current.ms, latency_met(paired, step, questions, final_step)

        cfg = self.config
        choice = choose_plan(
            self._prunable(current.model), step.limit * current.ms, current.ms, prune=cfg.prune,
            schedule=cfg.schedule, predictor=self.predictor, calibration=self.calibration, measure=measure,
            original=original_channels(current.lineage[1]),
        )
        return choice, measured

    def _attempt(
        self, step: int, attempt: int, reduction: float, epochs: int, recovery_epochs: int, current: Reference,
        teacher: nn.Module, budget: Budget, progress: Progress,
    ) -> tuple[dict, nn.Module, PruningPlan]:
        """One try. ``recovery_epochs`` are added to its training when its plan meets the final
        budget: the last step and the final recovery of its model are one schedule."""
        cfg = self.config
        name = f"step-{step:02d}-try-{attempt}"
        work = self.folder.steps / f".{name}"
        work.mkdir(parents=True, exist_ok=True)
        target_ms = max(budget.final_ms, current.ms * (1 - reduction))
        final_step = target_ms <= budget.final_ms
        step_question = Question("step budget", "candidate", target_ms / current.ms, current.name, budget.statistic)
        questions = [step_question, *budget.final_questions()]
        plan_path = work / "plan.json"
        measured: dict[tuple, tuple[nn.Module, Paired]] = {}
        if plan_path.exists():
            choice = PlanChoice.from_dict(json.loads(plan_path.read_text()))
        else:
            progress.console.print(
                f"{name}: screening {cfg.schedule.allocation} pruning plans for {target_ms:.3f} ms by predicted latency"
            )
            try:
                choice, measured = self._choose_plan(step_question, questions, final_step, current, teacher, work)
            except NothingLeftToPrune:
                shutil.rmtree(work, ignore_errors=True)  # the try never started: nothing of it is kept
                raise
            write_json(plan_path, choice.to_dict())
        plan = choice.plan
        if plan.groups in measured:
            student, paired = measured[plan.groups]
        else:  # a resumed attempt: its plan was chosen before the stop
            student = apply_plan(copy.deepcopy(current.model), plan, self.example_input)
            paired = self._measure_latency(student, work, questions, current, teacher)
        measured.clear()
        latency_ok = latency_met(paired, step_question, questions, final_step)
        finishes = latency_ok and all(paired.verdict(q.name).meets for q in budget.final_questions())
        if not latency_ok:
            epochs = 0  # judged on its structure: training would not make it faster
        elif not finishes:
            recovery_epochs = 0
        kd_teacher = current.model if cfg.distill.teacher == "previous" else teacher
        measured_count = sum(c["ms"] is not None for c in choice.candidates)
        progress.console.print(
            f"{name}: {len(choice.candidates)} candidates, {measured_count} measured; removed {plan.ratio:.0%} "
            f"of the channels (predicted {choice.predicted_ms:.3f} ms); "
            + (f"distilling {epochs} epochs" + (f" and the final recovery's {recovery_epochs}" if finishes else "")
               if latency_ok else "not distilled: the judge rejects its latency")
        )
        if finishes:
            epochs += recovery_epochs
        result = distill(
            student, kd_teacher, self.train_set, self.val_set, cfg.distill.model_copy(update={"epochs": epochs}),
            checkpoint_dir=work / "distill", progress=progress,
        ) if epochs else None
        save_checkpoint(
            work / "model", base_spec=current.lineage[0], plans=[*current.lineage[1], plan], model=student,
            input_shape=cfg.input_shape, input_dtype=self.input_dtype, metadata={"step": step, "attempt": attempt},
        )
        measurement = self._measure(student, work)
        paired.profiles["candidate"].save(work / "profile.json")
        summary = {**latency_summary(paired.profiles["candidate"], budget.statistic), **measurement.summary()}
        accuracy = 100 * summary["accuracy"]
        step_verdict = paired.verdict(step_question.name)
        finals = [paired.verdict(q.name) for q in budget.final_questions()]
        size_limit = cfg.budget.max_size_mb
        failures = []
        if not measurement.parity.passed:
            failures.append(
                f"ONNX parity failed: max |diff| {measurement.parity.max_abs_diff:.2e}, "
                f"top-1 agreement {measurement.parity.top1_agreement:.1%}"
            )
        judged = finals if final_step else [step_verdict]  # on the step aimed at the final budget, the final verdicts count
        if not latency_ok:
            failures.extend(v.message() for v in judged if not v.meets)
        if accuracy < budget.accuracy_floor:
            failures.append(f"accuracy {accuracy:.2f}% < floor {budget.accuracy_floor:.2f}%"
                            + ("" if latency_ok else " (not distilled)"))
        if size_limit is not None and summary["size_mb"] > size_limit:
            failures.append(f"size {summary['size_mb']:.2f} MB > {size_limit} MB")
        accepted = not failures
        reason = "; ".join(failures) or (
            "; ".join(v.message() for v in judged) + f"; accuracy {accuracy:.2f}% >= {budget.accuracy_floor:.2f}%"
        )
        speedup = paired_speedup(paired, budget.statistic)
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = self.folder.steps / name
        publish_dir(work, final)
        entry = {
            "step": step,
            "attempt": attempt,
            "dir": str(final.relative_to(self.out)),
            "reduction": reduction,
            "target_ms": target_ms,
            "reference": current.name,
            "verdicts": [step_verdict.to_dict(), *(v.to_dict() for v in finals)],
            "meets_final": all(v.meets for v in finals),
            "measure_s": paired.rounds.wall_s,
            "ratio": plan.ratio,
            "allocation": cfg.schedule.allocation,
            "predicted_ms": choice.predicted_ms,
            "candidates": choice.candidates,
            "predictor": choice.calibration,
            "distill": {"best_val_accuracy": result.best_val_accuracy if result else None,
                        "epochs": result.epochs_run if result else 0,
                        "recovery_epochs": recovery_epochs if finishes else 0},
            "accepted": accepted,
            "reason": reason,
            **speedup,
            **summary,
        }
        append_entry(self.folder.ledger, entry)
        return entry, student, plan

    def _recover(self, last: dict, teacher: nn.Module, epochs: int, message: str, progress: Progress) -> None:
        """Train the last accepted model ``epochs`` more epochs from the teacher (its
        structure, hence its latency, stays as measured) and record it as the run's result when its
        accuracy is at least the step's; a killed recovery starts again from its checkpoint. Only a
        run that ended short of its final budget gets here: a try that meets it trains its recovery
        epochs in its own schedule."""
        cfg = self.config
        work = self.folder.steps / ".recovery"
        student, meta = load_checkpoint(self.folder.of(last, "model"))
        progress.console.print(f"final recovery: {epochs} epochs of {entry_name(last)}")
        recovery_cfg = cfg.distill.model_copy(update={"epochs": epochs})
        result = distill(student, teacher, self.train_set, self.val_set, recovery_cfg,
                         checkpoint_dir=work / "distill", progress=progress)
        save_checkpoint(
            work / "model", base_spec=meta["base_spec"], plans=meta["plans"], model=student,
            input_shape=cfg.input_shape, input_dtype=self.input_dtype, metadata={"recovery_of": last["dir"]},
        )
        measurement = self._measure(student, work)
        shutil.copy2(self.folder.of(last, "profile.json"), work / "profile.json")
        accuracy = 100 * measurement.metrics["accuracy"]
        accepted = measurement.parity.passed and accuracy >= 100 * last["accuracy"]
        reason = (
            f"accuracy {accuracy:.2f}% after {result.epochs_run} more epochs (was {100 * last['accuracy']:.2f}%)"
            + ("" if measurement.parity.passed else "; ONNX parity failed")
        )
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = self.folder.steps / "recovery"
        publish_dir(work, final)
        keep = ("step", "attempt", "target_ms", "reference", "verdicts", "meets_final", "measure_s", "ratio",
                "allocation", "speedup", "speedup_ci", "latency_ms", "statistic_ms", "cv", "robust_cv", "stable")
        entry = {
            **{k: last[k] for k in keep}, "kind": "recovery", "dir": str(final.relative_to(self.out)),
            "distill": {"best_val_accuracy": result.best_val_accuracy, "epochs": result.epochs_run},
            "accepted": accepted, "reason": reason, "message": message, **measurement.summary(),
        }
        append_entry(self.folder.ledger, entry)
        progress.console.print(f"final recovery: {'accepted' if accepted else 'rejected'}: {reason}")

    def _quantize(self, last: dict, budget: Budget, message: str, progress: Progress) -> None:
        """The final INT8 stage: the result's ONNX model quantized on training batches, measured
        beside it and the teacher, and accepted only when the judge grants the speedup over the
        float model, the accuracy drop is within ``quantize.max_drop`` and the floor holds. A
        rejected one leaves the float model as the result (the ledger line says why)."""
        cfg, q = self.config, self.config.quantize
        work = self.folder.steps / ".quantize"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        float_onnx = self.folder.of(last, "model.onnx")
        progress.console.print(f"quantize: INT8 ({q.method}, {q.calibration_batches} calibration batches) of {entry_name(last)}")
        seconds = quantize_onnx(float_onnx, work / "model.onnx", calibration_batches(self.train_set, float_onnx, q), q)
        finals = tuple(dataclasses.replace(question, subject=INT8) for question in budget.final_questions())
        result = judge_quantized(
            float_onnx, work / "model.onnx", target_of(cfg), cfg.target.profile, self.val_set, cfg.num_classes, q,
            seconds, cache_dir=work / "compiled", others={"teacher": self.folder.teacher_onnx},
            questions=finals,
        )
        shutil.rmtree(work / "compiled", ignore_errors=True)
        result.paired.profiles[INT8].save(work / "profile.json")
        accuracy = result.accuracy[INT8]
        failures = [] if result.accepted else [result.reason]
        if accuracy < budget.accuracy_floor:
            failures.append(f"accuracy {accuracy:.2f}% < floor {budget.accuracy_floor:.2f}%")
        final = self.folder.steps / "quantize"
        publish_dir(work, final)
        verdicts = [result.paired.verdict(question.name) for question in finals]
        keep = ("step", "attempt", "target_ms", "reference", "ratio", "allocation", "params", "macs")
        entry = {
            **{k: last[k] for k in keep}, "kind": "quantize", "dir": str(final.relative_to(self.out)),
            "quantize_of": last["dir"], "verdicts": [result.paired.verdict("int8 vs float").to_dict(),
                                                     *(v.to_dict() for v in verdicts)],
            "meets_final": all(v.meets for v in verdicts), "measure_s": result.paired.rounds.wall_s,
            "distill": {"best_val_accuracy": None, "epochs": 0, "recovery_epochs": 0},
            "accepted": not failures, "reason": "; ".join(failures) or result.reason,
            "quantize": result.to_dict(), "message": message, "accuracy": accuracy / 100, "size_mb": result.size_mb[INT8],
            **paired_speedup(result.paired, budget.statistic, subject=INT8),
            **latency_summary(result.paired.profiles[INT8], budget.statistic),
        }
        append_entry(self.folder.ledger, entry)
        verdict = "accepted" if entry["accepted"] else "rejected: the float model stays the result"
        progress.console.print(f"quantize: {verdict}: {entry['reason']}")

    def _prunable(self, model: nn.Module) -> PrunableModel:
        """``model`` (the teacher or the last accepted student) traced once: the floor check and
        every try of a step plan from one trace and one scoring of its channels."""
        if self._traced is None or self._traced[0] is not model:
            self._traced = (model, PrunableModel(model, self.example_input))
        return self._traced[1]

    def _below_floor(self, teacher: nn.Module, budget: Budget) -> str | None:
        """Why no step is taken, when the final budget is below what pruning can reach here.

        The floor is the predicted latency of the teacher with every group the config lets shrink
        cut to its fewest channels (``PrunableModel.floor_plan``), calibrated on the teacher's
        measured latency: what is left is the per-operator cost of the backend at this batch. A
        budget under ``FLOOR_MARGIN`` times it cannot be met by removing channels, so the run stops
        before spending steps (exit 1). A model the operator table cannot time is not checked."""
        cfg = self.config
        if not cfg.schedule.stop_at_floor or untimed_layers(teacher):
            return None
        prunable = self._prunable(teacher)
        full = prunable.layers(PruningPlan(cfg.prune.criterion, 0.0, ()))
        predictor = LatencyPredictor(self.predictor.table)
        predictor.calibrate([(full, budget.teacher_ms)])
        floor_ms = predictor.predict(prunable.layers(prunable.floor_plan(cfg.prune)))
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
        self._prepare_dir()
        torch.manual_seed(cfg.seed)
        self._load_data()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=self.console, transient=False,
        ) as progress:
            teacher, base_spec, plans = self._teacher(progress)
            progress.console.print("teacher: exporting and profiling on", cfg.target.backend)
            teacher_summary = self._measure_teacher(teacher)
            budget = self._budget(teacher_summary)
            progress.console.print(
                f"teacher: {budget.statistic} {budget.teacher_ms:.3f} ms, accuracy {budget.teacher_accuracy:.2f}%; "
                f"final budget: {budget.describe()}"
            )
            table = LatencyTable(cfg.target.backend, threads=cfg.target.threads, precision=cfg.target.precision,
                                 options=cfg.target.backend_options())
            self.predictor = LatencyPredictor(table)
            entries = self.folder.entries()
            current = Reference("teacher", teacher, self.folder.teacher_onnx, budget.teacher_ms,
                                (base_spec, plans))
            last = last_accepted(entries, with_checkpoint=True)  # a module to go on from
            if last is not None:
                model, meta = load_checkpoint(self.folder.of(last, "model"))
                current = Reference("current", model, self.folder.of(last, "model.onnx"), last["statistic_ms"],
                                    (meta["base_spec"], meta["plans"]))
            task = progress.add_task("spiral steps", total=cfg.schedule.max_steps, completed=sum(e["accepted"] for e in entries))
            message = (None if entries else self._below_floor(teacher, budget)) or self._loop(
                entries, current, teacher, budget, progress, task)
            entries = self.folder.entries()
            last = last_accepted(entries)
            total = cfg.schedule.total_epochs
            epochs = cfg.schedule.final_epochs if total is None else total - epochs_spent(entries)
            if (epochs > 0 and last is not None and not last["meets_final"]
                    and not any(e.get("kind") in ("recovery", "quantize") for e in entries)):
                self._recover(last, teacher, epochs, message, progress)
                entries = self.folder.entries()
            last = last_accepted(entries)
            if cfg.quantize is not None and last is not None and not any(e.get("kind") == "quantize" for e in entries):
                self._quantize(last, budget, message, progress)
        entries = self.folder.entries()
        for e in entries:
            if e.get("kind") in ("recovery", "quantize"):
                stage = "final recovery" if e["kind"] == "recovery" else "INT8 quantization"
                message = f"{message}; {stage} {'accepted' if e['accepted'] else 'rejected'}: {e['reason']}"
        report_paths = write_reports(self.out, cfg, budget.to_dict(), teacher_summary, entries, message)
        met = met_budget(last_accepted(entries))
        return SpiralOutcome(met, message, teacher_summary, entries, report_paths)

    def _loop(
        self, entries: list[dict], current: Reference, teacher: nn.Module, budget: Budget, progress: Progress, task: int,
    ) -> str:
        schedule = self.config.schedule
        entries = list(entries)
        ended = [e for e in entries if e.get("kind") in ("recovery", "quantize")]
        if ended:  # the loop had ended before the final recovery or quantization
            return ended[0]["message"]
        step = 1 + sum(e["accepted"] for e in entries)
        attempt = 1 + sum(1 for e in entries if e["step"] == step)
        last = last_accepted(entries)
        while True:
            if last is not None and last["meets_final"]:
                return f"final budget met: {final_summary(last)}"
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
            reduction = schedule.initial_reduction * schedule.decay ** (step - 1) * schedule.backoff ** (attempt - 1)
            try:
                entry, student, plan = self._attempt(step, attempt, reduction, epochs, recovery_epochs, current,
                                                     teacher, budget, progress)
            except NothingLeftToPrune as stop:
                return f"step {step}: {stop}"
            verdict = "accepted" if entry["accepted"] else "rejected"
            progress.console.print(f"step {step} try {attempt}: {verdict}: {entry['reason']}")
            entries.append(entry)
            if entry["accepted"]:
                current = Reference("current", student, self.folder.of(entry, "model.onnx"), entry["statistic_ms"],
                                    (current.lineage[0], [*current.lineage[1], plan]))
                last = entry
                step, attempt = step + 1, 1
                progress.advance(task)
            else:
                attempt += 1


def latency_met(paired: Paired, step: Question, questions: list[Question], final_step: bool) -> bool:
    """The judge grants the step budget or, on a step aiming at the final budget, every final question.

    There the step budget is the final budget in the teacher's planning figure (measured alone when
    the run started) over the current model's; the final questions ask the same of the teacher
    measured in the same rounds, so they decide, and a stale planning figure cannot reject a plan
    the judge finds meets the final budget (ResNet at 4x, 2026-12-03: 4.07x over the teacher,
    rejected on the step question)."""
    judged = [q for q in questions if q.name != step.name] if final_step else [step]
    return all(paired.verdict(q.name).meets for q in judged)


def epochs_spent(entries: list[dict]) -> int:
    """The training epochs the ledger's lines spent (every try and the recovery)."""
    return sum(e["distill"]["epochs"] for e in entries)


def paired_speedup(paired: Paired, statistic: str, subject: str = "candidate") -> dict:
    """``subject``'s speedup over the teacher: the median of the per-round ratios, with its interval."""
    ratios = paired.rounds.values(Question("speedup", subject, 1.0, "teacher", statistic))
    if len(ratios) == 0:  # every round was set aside (an oversubscribed machine): no estimate
        return {"speedup": float("nan"), "speedup_ci": [float("nan"), float("nan")]}
    estimate, low, high = interval(ratios, paired.rounds.verdicts[0].confidence)
    return {"speedup": 1 / estimate, "speedup_ci": [1 / high, 1 / low]}


def final_summary(entry: dict) -> str:
    """``speedup 4.12x (95% CI 4.01x .. 4.20x) over the teacher, p50 0.934 ms`` of an accepted step."""
    low, high = entry["speedup_ci"]
    confidence = entry["verdicts"][0]["confidence"]
    return (
        f"speedup {entry['speedup']:.2f}x ({percent(confidence)} CI {low:.2f}x .. {high:.2f}x) over the teacher, "
        f"measured paired; {entry['statistic_ms']:.3f} ms, accuracy {100 * entry['accuracy']:.2f}%"
    )
