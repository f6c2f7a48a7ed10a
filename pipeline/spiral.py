"""The spiral controller: prune → distill → export → profile → evaluate → accept or back off.

State lives on disk so that a run killed at any point resumes where it stopped: the ledger says
which attempts finished; an attempt's working folder keeps its chosen plan and its distillation
checkpoints until the attempt is published with its ledger line.
"""

from __future__ import annotations

import copy
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
from deploy.profiler import ProfileSettings
from kernels.predictor import LatencyPredictor
from kernels.table import LatencyTable
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import RunConfig
from pipeline.data import load_datasets
from pipeline.distill.train import distill
from pipeline.export import export_onnx
from pipeline.ledger import append_entry, read_ledger, repair_ledger
from pipeline.measure import CandidateMeasurement, measure_candidate, profile_on_target
from pipeline.models import load_model
from pipeline.plan_search import PlanChoice, choose_plan
from pipeline.prune import PruningPlan, apply_plan
from pipeline.report import write_reports
from pipeline.report.run import best_accepted, met_budget

# Measuring a candidate plan needs only a rough latency, so it uses a short measurement.
PROBE_SETTINGS = ProfileSettings(warmup_s=0.1, min_samples=20, min_duration_s=0.2, max_duration_s=1.0)


@dataclass(frozen=True)
class Budget:
    statistic: str
    teacher_ms: float
    final_ms: float
    teacher_accuracy: float
    accuracy_floor: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


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
        self.ledger_path = out_dir / "ledger.jsonl"

    # ---- setup -------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        config_path = self.out / "config.json"
        data = self.config.model_dump(mode="json")
        if self.ledger_path.exists() or config_path.exists():
            if not self.resume:
                raise InputError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
            stored = json.loads(config_path.read_text())
            if config_digest(stored) != config_digest(data):
                raise InputError(f"{self.out} was started with a different config; --resume needs the same one")
        elif self.resume and self.out.exists() and any(self.out.iterdir()):
            raise InputError(f"{self.out} holds no spiral run to resume")
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(config_path, data)
        repair_ledger(self.ledger_path)

    def _load_data(self) -> None:
        cfg = self.config
        self.train_set, self.val_set = load_datasets(cfg.data.source, cfg.input_shape, seed=cfg.data.seed)
        if len(self.val_set) == 0 or len(self.train_set) == 0:
            raise InputError(f"data '{cfg.data.source}' has an empty train or validation split")
        batch = cfg.input_shape[0]
        loader = DataLoader(self.val_set, batch_size=max(batch, cfg.parity.samples), shuffle=False)
        inputs = next(iter(loader))[0]
        self.example_input = inputs[:batch]
        self.input_dtype = str(inputs.dtype).removeprefix("torch.")
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
        directory = self.out / "teacher" / "model"
        if cfg.teacher_training is None:
            model, base_spec, plans = load_model(cfg.model)
            self._check_model(model, cfg.model)
            return model, base_spec, plans
        key = config_digest(
            {
                "model": cfg.model,
                "data": cfg.data.model_dump(),
                "input_shape": cfg.input_shape,
                "training": cfg.teacher_training.model_dump(mode="json"),
            }
        )
        if directory.exists():
            model, meta = load_checkpoint(directory)
            if meta.get("metadata", {}).get("training_key") == key:
                self.console.print(f"teacher: reusing the trained teacher in {directory}")
                return model, meta["base_spec"], meta["plans"]
        model, base_spec, plans = load_model(cfg.model)
        self._check_model(model, cfg.model)
        self.console.print(f"teacher: training {cfg.model} on {cfg.data.source} ({cfg.teacher_training.epochs} epochs)")
        result = distill(
            model,
            None,
            self.train_set,
            self.val_set,
            cfg.teacher_training,
            checkpoint_dir=self.out / "teacher" / "training",
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
        shutil.rmtree(self.out / "teacher" / "training", ignore_errors=True)
        return model, base_spec, plans

    def _measure_teacher(self, teacher: nn.Module) -> dict:
        """The teacher is measured once per run; a resumed run keeps the same budgets."""
        summary_path = self.out / "teacher" / "summary.json"
        if summary_path.exists():
            return json.loads(summary_path.read_text())
        work = self.out / "teacher" / ".measure"
        shutil.rmtree(work, ignore_errors=True)
        measurement = self._measure(teacher, work)
        summary = measurement.summary(self.config.budget.statistic)
        for name in ("model.onnx", "profile.json", "eval.json"):
            (work / name).replace(self.out / "teacher" / name)
        shutil.rmtree(work, ignore_errors=True)
        write_json(summary_path, summary)
        return summary

    def _budget(self, teacher: dict) -> Budget:
        b = self.config.budget
        teacher_ms = teacher["statistic_ms"]
        finals = [v for v in (b.max_ms, teacher_ms / b.min_speedup if b.min_speedup else None) if v is not None]
        accuracy = 100 * teacher["accuracy"]
        floors = [v for v in (b.accuracy.min, accuracy - b.accuracy.max_drop if b.accuracy.max_drop is not None else None) if v is not None]
        return Budget(b.statistic, teacher_ms, min(finals), accuracy, max(floors))

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
    def _measure_plan(self, model: nn.Module, plan: PruningPlan, work: Path) -> float:
        """The budget statistic of ``model`` pruned by ``plan``, exported and briefly profiled on the target."""
        candidate = apply_plan(copy.deepcopy(model), plan, self.example_input)
        path = export_onnx(candidate, self.example_input, work / "candidate.onnx")
        profile = profile_on_target(path, self.config, work / "compiled", PROBE_SETTINGS)
        path.unlink()
        return profile.stat(self.config.budget.statistic)

    def _choose_plan(self, model: nn.Module, target_ms: float, current_ms: float, work: Path) -> PlanChoice:
        cfg = self.config
        table = LatencyTable(cfg.target.backend, threads=cfg.target.threads, precision=cfg.target.precision)
        return choose_plan(
            model, self.example_input, target_ms, current_ms, prune=cfg.prune, schedule=cfg.schedule,
            predictor=LatencyPredictor(table), calibration=self.calibration,
            measure=lambda plan: self._measure_plan(model, plan, work),
        )

    def _reference_now(self, reference_onnx: Path, work: Path) -> float:
        """The current model profiled again right after the candidate, with the same settings."""
        profile = profile_on_target(reference_onnx, self.config, work / "reference-compiled")
        shutil.rmtree(work / "reference-compiled", ignore_errors=True)
        return profile.stat(self.config.budget.statistic)

    def _attempt(
        self, step: int, attempt: int, reduction: float, current: nn.Module, current_ms: float, current_onnx: Path,
        teacher: nn.Module, lineage: tuple[str, list], budget: Budget, progress: Progress,
    ) -> tuple[dict, nn.Module, PruningPlan]:
        cfg = self.config
        name = f"step-{step:02d}-try-{attempt}"
        work = self.out / "steps" / f".{name}"
        work.mkdir(parents=True, exist_ok=True)
        target_ms = max(budget.final_ms, current_ms * (1 - reduction))
        plan_path = work / "plan.json"
        if plan_path.exists():
            choice = PlanChoice.from_dict(json.loads(plan_path.read_text()))
        else:
            progress.console.print(
                f"{name}: screening {cfg.schedule.allocation} pruning plans for {target_ms:.3f} ms by predicted latency"
            )
            choice = self._choose_plan(current, target_ms, current_ms, work)
            write_json(plan_path, choice.to_dict())
        plan = choice.plan
        measured_count = sum(c["ms"] is not None for c in choice.candidates)
        student = copy.deepcopy(current)
        apply_plan(student, plan, self.example_input)
        kd_teacher = current if cfg.distill.teacher == "previous" else teacher
        progress.console.print(
            f"{name}: {len(choice.candidates)} candidates, {measured_count} measured; removed {plan.ratio:.0%} "
            f"of the channels (predicted {choice.predicted_ms:.3f} ms); distilling"
        )
        result = distill(
            student, kd_teacher, self.train_set, self.val_set, cfg.distill,
            checkpoint_dir=work / "distill", progress=progress,
        )
        base_spec, plans = lineage
        save_checkpoint(
            work / "model", base_spec=base_spec, plans=[*plans, plan], model=student,
            input_shape=cfg.input_shape, input_dtype=self.input_dtype, metadata={"step": step, "attempt": attempt},
        )
        measurement = self._measure(student, work)
        summary = measurement.summary(budget.statistic)
        accuracy = 100 * summary["accuracy"]
        measured = summary["statistic_ms"]
        # Budgets were set from earlier measurements; the current model measured again now tells how
        # much the machine has drifted since (load, clocks), and the budgets move with it.
        reference_ms = self._reference_now(current_onnx, work)
        drift = reference_ms / current_ms
        step_budget, final_now = target_ms * drift, budget.final_ms * drift
        size_limit = cfg.budget.max_size_mb
        failures = []
        if not measurement.parity.passed:
            failures.append(
                f"ONNX parity failed: max |diff| {measurement.parity.max_abs_diff:.2e}, "
                f"top-1 agreement {measurement.parity.top1_agreement:.1%}"
            )
        if measured > step_budget:
            failures.append(f"{budget.statistic} {measured:.3f} ms > step budget {step_budget:.3f} ms")
        if accuracy < budget.accuracy_floor:
            failures.append(f"accuracy {accuracy:.2f}% < floor {budget.accuracy_floor:.2f}%")
        if size_limit is not None and summary["size_mb"] > size_limit:
            failures.append(f"size {summary['size_mb']:.2f} MB > {size_limit} MB")
        accepted = not failures
        reason = "; ".join(failures) or (
            f"{budget.statistic} {measured:.3f} ms <= {step_budget:.3f} ms, "
            f"accuracy {accuracy:.2f}% >= {budget.accuracy_floor:.2f}%"
        )
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = self.out / "steps" / name
        publish_dir(work, final)
        entry = {
            "step": step,
            "attempt": attempt,
            "dir": str(final.relative_to(self.out)),
            "reduction": reduction,
            "target_ms": target_ms,
            "reference_ms": reference_ms,
            "drift": drift,
            "step_budget_ms": step_budget,
            "final_ms_now": final_now,
            "meets_final": measured <= final_now,
            "ratio": plan.ratio,
            "allocation": cfg.schedule.allocation,
            "predicted_ms": choice.predicted_ms,
            "candidates": choice.candidates,
            "predictor": choice.calibration,
            "distill": {"best_val_accuracy": result.best_val_accuracy, "epochs": result.epochs_run},
            "accepted": accepted,
            "reason": reason,
            "speedup": budget.teacher_ms * drift / measured,
            **summary,
        }
        append_entry(self.ledger_path, entry)
        return entry, student, plan

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
                f"final budget {budget.final_ms:.3f} ms at accuracy >= {budget.accuracy_floor:.2f}%"
            )
            entries = read_ledger(self.ledger_path)
            current, current_ms, lineage = teacher, budget.teacher_ms, (base_spec, plans)
            current_onnx = self.out / "teacher" / "model.onnx"
            accepted = [e for e in entries if e["accepted"]]
            if accepted:
                last = accepted[-1]
                current, meta = load_checkpoint(self.out / last["dir"] / "model")
                current_ms, lineage = last["statistic_ms"], (meta["base_spec"], meta["plans"])
                current_onnx = self.out / last["dir"] / "model.onnx"
            task = progress.add_task("spiral steps", total=cfg.schedule.max_steps, completed=len(accepted))
            message = self._loop(entries, current, current_ms, current_onnx, teacher, lineage, budget, progress, task)
        entries = read_ledger(self.ledger_path)
        report_paths = write_reports(self.out, cfg, budget.to_dict(), teacher_summary, entries, message)
        met = met_budget(best_accepted(entries))
        return SpiralOutcome(met, message, teacher_summary, entries, report_paths)

    def _loop(
        self, entries: list[dict], current: nn.Module, current_ms: float, current_onnx: Path, teacher: nn.Module,
        lineage: tuple[str, list], budget: Budget, progress: Progress, task: int,
    ) -> str:
        schedule = self.config.schedule
        step = 1 + sum(e["accepted"] for e in entries)
        attempt = 1 + sum(1 for e in entries if e["step"] == step)
        accepted = [e for e in entries if e["accepted"]]
        last: dict | None = accepted[-1] if accepted else None
        while True:
            if last is not None and last["meets_final"]:
                return (
                    f"final budget met: {budget.statistic} {last['statistic_ms']:.3f} ms <= "
                    f"{last['final_ms_now']:.3f} ms"
                )
            if step > schedule.max_steps:
                return f"stopped after max_steps={schedule.max_steps}"
            if attempt > schedule.patience + 1:
                return f"step {step} rejected {attempt - 1} times (patience {schedule.patience})"
            reduction = schedule.initial_reduction * schedule.decay ** (step - 1) * schedule.backoff ** (attempt - 1)
            entry, student, plan = self._attempt(
                step, attempt, reduction, current, current_ms, current_onnx, teacher, lineage, budget, progress
            )
            verdict = "accepted" if entry["accepted"] else "rejected"
            progress.console.print(f"step {step} try {attempt}: {verdict}: {entry['reason']}")
            if entry["accepted"]:
                current, current_ms, lineage = student, entry["statistic_ms"], (lineage[0], [*lineage[1], plan])
                current_onnx, last = self.out / entry["dir"] / "model.onnx", entry
                step, attempt = step + 1, 1
                progress.advance(task)
            else:
                attempt += 1
