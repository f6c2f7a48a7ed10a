"""One try of a spiral step: plan (screened by predicted latency, measured), train, measure, judge.

A candidate is measured when its plan is screened, before it is trained (its graph, hence its
latency, does not change with training), so a try the judge rejects spends no training epochs. The
try works in ``steps/.NAME/`` (its chosen plan and its distillation checkpoints, so a killed try
resumes) and is published as ``steps/NAME/`` with its ledger line.

When the search returns a contender (a block-free plan that meets the budget beside a chosen plan
that removes residual blocks, ``spiralprune.pipeline.passes.steps.plan_search``), each is trained for
``schedule.probe_epochs`` of an epoch, on the same batches from the same seed, and the one more
accurate on the validation split goes on (the search's choice on a tie); the probes are recorded in
the plan and the ledger line. The winner is then trained from its pruned weights, as it would have
been without the probe, so a resumed try trains exactly what the killed one did. With
``total_epochs``, a try's probes cost their epochs rounded up: taken from its final recovery's
share when its plan meets the final budget, else from what later tries and the recovery have left.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn

from spiralprune.core.atomic import publish_dir, write_json
from spiralprune.deploy.profiler import MeasuringSession, Paired
from spiralprune.deploy.sampling import Rounds
from spiralprune.kernels.predictor import Calibration, LatencyPredictor
from spiralprune.pipeline.acceptance import Latency, budget_rules, decide, passed, reason
from spiralprune.pipeline.budget import FinalBudget, TryQuestions, paired_speedup
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.measure import latency_summary, measure_paired, measuring_session
from spiralprune.pipeline.passes.steps.plan_search import Contender, NothingLeftToPrune, PlanChoice, PlanVerdict, choose_plan, judge_plan
from spiralprune.pipeline.passes.steps.record import StepEntry, probe_cost
from spiralprune.pipeline.prune import PrunableModel, PruningPlan, apply_plan, original_channels
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.scoring import score
from spiralprune.pipeline.teacher import RunData
from spiralprune.pipeline.training import Lineage, Trainee, train


@dataclass(frozen=True)
class Reference:
    """The model a step starts from: its name in paired measurements, module, ONNX file, latency and lineage."""

    name: str
    model: nn.Module
    onnx: Path
    ms: float
    lineage: Lineage

    @property
    def trainee(self) -> Trainee:
        return Trainee(self.model, self.lineage)


class Tries:
    """The tries of one run: its config, folder, data and latency predictor, and the last model traced."""

    def __init__(self, config: RunConfig, folder: RunFolder, data: RunData, predictor: LatencyPredictor,
                 console: Console):
        self.config = config
        self.folder = folder
        self.data = data
        self.predictor = predictor
        self.console = console
        self._traced: tuple[nn.Module, PrunableModel] | None = None

    def prunable(self, model: nn.Module) -> PrunableModel:
        """``model`` (the teacher or the last accepted student) traced once: the floor check and
        every try of a step plan from one trace and one scoring of its channels."""
        if self._traced is None or self._traced[0] is not model:
            self._traced = (model, PrunableModel(model, self.data.example_input))
        return self._traced[1]

    def _measure_latency(
        self, session: MeasuringSession, candidate: nn.Module, work: Path, questions: TryQuestions,
        current: Reference, teacher: nn.Module, prior: Rounds | None = None,
    ) -> Paired:
        """``candidate`` in rounds beside the current model and the teacher (kept loaded by ``session`` across
        the plans of the try), every question asked judged (``prior``: an earlier session of the same models,
        continued).

        A candidate is measured before it is distilled: training changes its weights, not its
        graph, so the verdicts hold for the distilled model and no epoch is spent on a structure
        the judge rejects. The candidate alone is profiled by layer, off the judged rounds: its
        ``profile.json`` says where the time of the run's result goes (the run report's explanation)."""
        path = export_onnx(candidate, self.data.example_input, work / "candidate.onnx")
        models = {"candidate": (path, candidate), "teacher": (self.folder.teacher_onnx, teacher),
                  current.name: (current.onnx, current.model)}
        paired = measure_paired(session, models, self.config, questions.asked, layers=("candidate",), prior=prior)
        path.unlink()
        return paired

    def _measurer(
        self, questions: TryQuestions, current: Reference, teacher: nn.Module, work: Path, session: MeasuringSession,
    ) -> tuple[Callable[[PruningPlan], PlanVerdict], dict[PruningPlan, tuple[nn.Module, Paired, PlanVerdict]]]:
        """The plan search's ``measure`` and what it fills: each measured plan's pruned module with its
        paired session and the judge's verdict (the chosen one is distilled as it is, not pruned again).
        A plan meets when the judge says it meets the step budget and, on the step that aims at the
        final budget, the final budget too. A plan measured again (one left undecided is measured
        longer) continues its session: its verdict and its paired record are of every round it ran."""
        measured: dict[PruningPlan, tuple[nn.Module, Paired, PlanVerdict]] = {}

        def measure(plan: PruningPlan) -> PlanVerdict:
            if plan in measured:
                candidate, earlier, _ = measured[plan]
                prior = earlier.rounds
            else:
                candidate, prior = apply_plan(copy.deepcopy(current.model), plan, self.data.example_input), None
            paired = self._measure_latency(session, candidate, work, questions, current, teacher, prior)
            judged = [paired.verdict(q.name) for q in questions.judged]
            verdict = PlanVerdict(paired.verdict(questions.step.name).estimate * current.ms, questions.outcome(paired),
                                  min(v.question.limit / v.estimate for v in judged),
                                  paired.rounds.wall_s - (0.0 if prior is None else prior.wall_s))
            measured[plan] = (candidate, paired, verdict)
            return verdict

        return measure, measured

    def _choose_plan(
        self, questions: TryQuestions, current: Reference, teacher: nn.Module, work: Path, session: MeasuringSession,
    ) -> tuple[PlanChoice, dict[PruningPlan, tuple[nn.Module, Paired, PlanVerdict]]]:
        """The step's plan, and each measured plan's pruned module, paired session and verdict (``_measurer``)."""
        measure, measured = self._measurer(questions, current, teacher, work, session)
        cfg = self.config
        prunable = self.prunable(current.model)
        score(prunable, current.trainee, cfg.prune, self.data.calibration, processes=self.data.processes,
              blocks=cfg.schedule.allocation == "latency" and cfg.schedule.remove_blocks, job_dir=work / "scoring",
              console=self.console)
        choice = choose_plan(
            prunable, questions.step.limit * current.ms, current.ms, prune=cfg.prune,
            schedule=cfg.schedule, predictor=self.predictor, calibration=self.data.calibration, measure=measure,
            original=original_channels(current.lineage[1]),
        )
        return choice, measured

    def attempt(
        self, step: int, attempt: int, reduction: float, epochs: int, recovery_epochs: int, current: Reference,
        teacher: Trainee, budget: FinalBudget, progress: Progress,
    ) -> tuple[StepEntry, nn.Module, PruningPlan]:
        """One try, top to bottom: what it asks (its latency questions and its acceptance rules, from the budget),
        its plan (chosen and measured), its training, its measurement, the decision; published with its ledger
        line, for the pass to record.

        ``recovery_epochs`` are added to its training when its plan meets the final budget: the
        last step and the final recovery of its model are one schedule."""
        name = f"step-{step:02d}-try-{attempt}"
        work = self.folder.steps / f".{name}"
        work.mkdir(parents=True, exist_ok=True)
        goal_ms = max(budget.final_ms, current.ms * (1 - reduction))
        questions = budget.try_questions(goal_ms, current.name, current.ms)
        rules = budget_rules(self.config.budget, budget.metric, latency=[Latency(q) for q in questions.judged],
                             reference="teacher")
        kd_teacher = current.trainee if self.config.distill.teacher == "previous" else teacher
        choice, student, paired, session = self._plan(name, work, questions, current, teacher.module, kd_teacher,
                                                      progress)
        latency_ok = questions.outcome(paired) == "meets"
        finishes = latency_ok and questions.meets_final(paired)
        if self.config.schedule.total_epochs is not None and finishes:
            recovery_epochs = max(recovery_epochs - probe_cost(choice.probes), 0)
        epochs = epochs + (recovery_epochs if finishes else 0) if latency_ok else 0  # training cannot make it faster
        measured_count = sum(c["ms"] is not None for c in choice.plans)
        longer = sum(len(c.get("sessions", ())) > 1 for c in choice.plans)  # none in a plan.json written before sessions were recorded
        progress.console.print(
            f"{name}: {len(choice.plans)} plans screened, {measured_count} measured"
            + (f" ({longer} measured longer: undecided after one session)" if longer else "")
            + f"; removed {choice.plan.ratio:.0%} "
            f"of the channels" + (f" and residual blocks {', '.join(choice.plan.blocks)}" if choice.plan.blocks else "")
            + f" (predicted {choice.predicted_ms:.3f} ms, {choice.predicted_ms / goal_ms:.0%} of the goal); "
            + (f"distilling {epochs} epochs"
               + (f", the final recovery's {recovery_epochs} among them" if finishes else "")
               if latency_ok else "not distilled: the judge rejects its latency")
        )
        trained = self.data.train(Trainee(student, (current.lineage[0], [*current.lineage[1], choice.plan])),
                                  kd_teacher, epochs, work, self.config, progress)
        trained = trained.model_copy(update={"recovery_epochs": recovery_epochs if finishes else 0})
        save_checkpoint(
            work / "model", base_spec=current.lineage[0], plans=[*current.lineage[1], choice.plan], model=student,
            input_shape=self.config.input_shape, input_dtype=self.data.input_dtype,
            metadata={"step": step, "attempt": attempt},
        )
        evidence = dataclasses.replace(self.data.evidence(student, work, self.config),
                                       verdicts={q.name: paired.verdict(q.name) for q in questions.judged},
                                       reference_metrics=budget.teacher_metrics)
        paired.profiles["candidate"].save(work / "profile.json")
        checks = decide(evidence, rules)
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = self.folder.steps / name
        publish_dir(work, final)
        # The try is measured: of its compiled files, only the teacher's and (rejected) the current model's are
        # measured again; an accepted model is compiled when the next step measures it as its current one.
        session.evict(keep=("teacher",) if passed(checks) else ("teacher", current.name))
        entry = StepEntry(
            step=step, attempt=attempt, dir=str(final.relative_to(self.folder.root)), accepted=passed(checks),
            reason=reason(checks), checks=[c.to_dict() for c in checks],
            reduction=reduction, goal_ms=goal_ms, reference=current.name, ratio=choice.plan.ratio,
            blocks=list(choice.plan.blocks), allocation=self.config.schedule.allocation, predicted_ms=choice.predicted_ms,
            plans=choice.plans, probes=list(choice.probes), predictor=choice.calibration, distill=trained,
            predicted_layers=LatencyPredictor(self.predictor.table, Calibration(**choice.calibration)).per_layer(
                self.prunable(current.model).layers(choice.plan)),
            verdicts=[paired.verdict(q.name).to_dict() for q in questions.asked], meets_final=questions.meets_final(paired),
            measure_s=paired.rounds.wall_s, compiles=session.compiles, **paired_speedup(paired, budget.latency.statistic),
            **latency_summary(paired.profiles["candidate"], budget.latency.statistic), **evidence.summary(),
        )
        return entry, student, choice.plan

    def _plan(
        self, name: str, work: Path, questions: TryQuestions, current: Reference, teacher: nn.Module,
        kd_teacher: Trainee, progress: Progress,
    ) -> tuple[PlanChoice, nn.Module, Paired, MeasuringSession]:
        """The try's plan, its pruned module, its paired session and the try's measuring session, closed (its
        ``compiles``, and the keys of its compiled files for ``attempt`` to evict): chosen (probed when the search
        found a contender) and measured now, or (a resumed try) read from its ``plan.json``, pruned and measured again
        (``judge_plan``: longer when the judge leaves it undecided, as the search does). The session keeps
        the teacher and the current model loaded across the plans and is closed before any training."""
        plan_path = work / "plan.json"
        with measuring_session(self.config, self.folder.compiled) as session:
            if plan_path.exists():
                choice = PlanChoice.from_dict(json.loads(plan_path.read_text()))
                measure, measured = self._measurer(questions, current, teacher, work, session)
                judge_plan(choice.plan, measure)  # measured longer when undecided, as the search did
                student, paired, _ = measured[choice.plan]
                return choice, student, paired, session
            self.console.print(
                f"{name}: screening {self.config.schedule.allocation} pruning plans for "
                f"{questions.step.limit * current.ms:.3f} ms by predicted latency"
            )
            try:
                choice, measured = self._choose_plan(questions, current, teacher, work, session)
            except NothingLeftToPrune:
                shutil.rmtree(work, ignore_errors=True)  # the try never started: nothing of it is kept
                raise
        if choice.contenders:
            choice = self._probe(name, choice, {plan: (m, v) for plan, (m, _, v) in measured.items()}, current.lineage,
                                 kd_teacher, progress)
        write_json(plan_path, choice.to_dict())
        student, paired, _ = measured[choice.plan]
        return choice, student, paired, session

    def _probe(
        self, name: str, choice: PlanChoice, measured: dict[PruningPlan, tuple[nn.Module, PlanVerdict]],
        lineage: Lineage, kd_teacher: Trainee, progress: Progress,
    ) -> PlanChoice:
        """The chosen plan and its contenders each trained ``schedule.probe_epochs`` of an epoch (a
        copy of its pruned module, pruned from the model of ``lineage``; one epoch of the run's
        distillation on the same random share of the training set), the most accurate on the validation
        split chosen, the search's choice on a tie."""
        cfg = self.config
        train_set = self.data.splits.train
        share = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed))
        size = max(cfg.distill.batch_size, round(cfg.schedule.probe_epochs * len(train_set)))
        settings = cfg.distill.model_copy(update={"epochs": 1})
        entrants = (Contender(choice.plan, choice.predicted_ms, cfg.schedule.allocation), *choice.contenders)
        probes = []
        for index, entrant in enumerate(entrants):
            plan = entrant.plan
            module, verdict = measured[plan]
            trained = train(Trainee(copy.deepcopy(module), (lineage[0], [*lineage[1], plan])), kd_teacher, train_set,
                            self.data.splits.val, settings, share=share[:size].tolist(),
                            job_dir=self.folder.steps / f".{name}" / f"probe-{index}", processes=self.data.processes,
                            progress=progress, loading=self.data.splits.loading, task=self.data.task)
            probes.append({
                "structure": entrant.structure, "ratio": round(plan.ratio, 4), "blocks": list(plan.blocks),
                "predicted_ms": entrant.predicted_ms, "ms": verdict.ms, "quality": trained.best_val_quality,
                "epochs": min(size, len(train_set)) / len(train_set),
            })
        worse = self.data.task.quality().worse_by
        won = min(range(len(probes)), key=lambda i: (worse(probes[i]["quality"], probes[0]["quality"]), i))
        for i, probe in enumerate(probes):
            probe["chosen"] = i == won
        progress.console.print(
            f"{name}: probes of {probes[0]['epochs']:.2f} epoch each: " + "; ".join(
                f"{p['structure']}: {p['ratio']:.0%} of the channels" + (f" and {len(p['blocks'])} blocks" if p["blocks"] else "")
                + f" removed, {p['ms']:.3f} ms, {self.data.task.metric} {p['quality']:.4g}" + (" (chosen)" if p["chosen"] else "")
                for p in probes)
        )
        return PlanChoice(entrants[won].plan, entrants[won].predicted_ms, choice.plans, choice.calibration,
                          probes=tuple(probes))

