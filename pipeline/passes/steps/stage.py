"""The spiral's steps: each asks for the final budget (``schedule.initial_reduction: final``, the default)
or for a latency reduction that decays (NetAdapt), backs off a rejected try and stops at the final
budget, ``max_steps``, ``patience`` or the training budget; each try is
``spiralprune.pipeline.passes.steps.tries.Tries.attempt``, one ledger line. A final budget out of pruning's reach
stops the run before its first step."""

from __future__ import annotations

from typing import ClassVar

from spiralprune.kernels.layers import untimed_layers
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.budget import final_summary
from spiralprune.pipeline.checkpoint import load_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.passes.record import LedgerEntry, epochs_spent
from spiralprune.pipeline.passes.run import Run
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.passes.steps.plan_search import NothingLeftToPrune
from spiralprune.pipeline.passes.steps.tries import Reference, Tries
from spiralprune.pipeline.prune import PruningPlan
from spiralprune.pipeline.prune.latency_aware import weighs_blocks
from spiralprune.pipeline.run_folder import last_accepted

# A final budget under this fraction of the predicted floor is out of pruning's reach: the floor is a
# prediction (the table's single operators, calibrated on the full teacher), so a budget near it is
# left to the steps and the judge.
FLOOR_MARGIN = 0.8


class Steps:
    """Every run's first pass; ``run.message`` says how it ended."""

    kind: ClassVar[str] = "step"

    @classmethod
    def planned(cls, config: RunConfig) -> Steps:
        return cls()

    def run(self, run: Run) -> None:
        cfg = run.config
        table = LatencyTable(cfg.target.backend, threads=cfg.target.threads, precision=cfg.target.precision,
                             options=cfg.target.backend_options())
        tries = Tries(cfg, run.folder, run.data, LatencyPredictor(table), run.progress.console)
        entries = run.entries()
        task = run.progress.add_task("spiral steps", total=run.config.schedule.max_steps,
                                     completed=sum(e.accepted for e in entries))
        ended = run.ended(self.kind)
        if ended:  # the steps had ended before a later pass ran: its line says how
            run.message = ended[0].message
            return
        run.message = (None if entries else below_floor(run, tries)) or self._loop(run, tries, entries, task)

    def _loop(self, run: Run, tries: Tries, entries: list[LedgerEntry], task: int) -> str:
        schedule, budget, progress = run.config.schedule, run.budget, run.progress
        current = Reference("teacher", run.teacher.module, run.folder.teacher_onnx, budget.teacher_ms,
                            run.teacher.lineage)
        last = last_accepted(entries, with_checkpoint=True)  # a module to go on from
        if last is not None:
            model, meta = load_checkpoint(run.folder.of(last, "model"))
            current = Reference("current", model, run.folder.of(last, "model.onnx"), last.statistic_ms,
                                (meta["base_spec"], meta["plans"]))
        entries = list(entries)
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
            epochs, recovery_epochs = run.config.distill.epochs, schedule.final_epochs
            if schedule.total_epochs is not None:  # the final recovery's share is never spent on tries
                left = schedule.total_epochs - epochs_spent(entries)
                epochs = min(epochs, left - schedule.final_epochs)
                if epochs < 1:
                    return (f"the tries spent the training budget (total_epochs={schedule.total_epochs}, "
                            f"{schedule.final_epochs} kept for the final recovery)")
                recovery_epochs = left - epochs
            reduction = step_reduction(schedule, step, attempt, current.ms, budget.final_ms)
            try:
                entry, student, plan = tries.attempt(step, attempt, reduction, epochs, recovery_epochs, current,
                                                     run.teacher, budget, progress)
            except NothingLeftToPrune as stop:
                return f"step {step}: {stop}"
            run.record(entry)
            verdict = "accepted" if entry.accepted else "rejected"
            progress.console.print(f"step {step} try {attempt}: {verdict}: {entry.reason}")
            entries.append(entry)
            if entry.accepted:
                current = Reference("current", student, run.folder.of(entry, "model.onnx"), entry.statistic_ms,
                                    (current.lineage[0], [*current.lineage[1], plan]))
                last = entry
                step, attempt = step + 1, 1
                progress.advance(task)
            else:
                attempt += 1


def below_floor(run: Run, tries: Tries) -> str | None:
    """Why no step is taken, when the final budget is below what pruning can reach here.

    The floor is the predicted latency of the teacher with every group the config lets shrink
    cut to its fewest channels (and, when the knapsack may remove them, every residual block
    gone; ``PrunableModel.floor_plan``), calibrated on the teacher's
    measured latency: what is left is the per-operator cost of the backend at this batch. A
    budget under ``FLOOR_MARGIN`` times it cannot be met by removing channels, so the run stops
    before spending steps (exit 1). A model the operator table cannot time is not checked."""
    cfg, budget, teacher = run.config, run.budget, run.teacher.module
    if not cfg.schedule.stop_at_floor or untimed_layers(teacher):
        return None
    prunable = tries.prunable(teacher)
    full = prunable.layers(PruningPlan(cfg.prune.criterion, 0.0, ()))
    predictor = LatencyPredictor(tries.predictor.table)
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


def step_reduction(schedule: ScheduleConfig, step: int, attempt: int, current_ms: float, final_ms: float) -> float:
    """The fraction of ``current_ms`` try ``attempt`` of ``step`` asks to remove: NetAdapt's decaying
    ``initial_reduction``, or with ``final`` what the final budget needs; backed off per rejected try."""
    if schedule.initial_reduction == "final":
        wanted = max(1 - final_ms / current_ms, 0.0)
    else:
        wanted = schedule.initial_reduction * schedule.decay ** (step - 1)
    return wanted * schedule.backoff ** (attempt - 1)
