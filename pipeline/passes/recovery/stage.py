"""The final recovery: the last accepted model trained ``schedule.final_epochs`` more epochs from the
teacher (or what ``total_epochs`` leaves), when the steps ended short of the final budget (a try that
meets it trains its recovery epochs in its own schedule). Its structure, hence its latency, stays as
measured; it is the run's result when its metric is at least the step's. A killed recovery starts
again from its checkpoint."""

from __future__ import annotations

import shutil
from typing import ClassVar

from spiralprune.core.atomic import publish_dir
from spiralprune.pipeline.acceptance import Parity, QualityLimit, decide, passed, reason
from spiralprune.pipeline.checkpoint import load_checkpoint, save_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.passes.record import epochs_spent
from spiralprune.pipeline.passes.recovery.record import RecoveryEntry
from spiralprune.pipeline.passes.run import Run
from spiralprune.pipeline.run_folder import last_accepted
from spiralprune.pipeline.training import Trainee


class Recovery:
    kind: ClassVar[str] = "recovery"

    @classmethod
    def planned(cls, config: RunConfig) -> Recovery:
        return cls()

    def run(self, run: Run) -> None:
        entries = run.entries()
        last = last_accepted(entries)
        total = run.config.schedule.total_epochs
        epochs = run.config.schedule.final_epochs if total is None else total - epochs_spent(entries)
        if epochs <= 0 or last is None or last.meets_final or run.ran(self.kind):
            return
        cfg, folder, progress = run.config, run.folder, run.progress
        work = folder.steps / ".recovery"
        student, meta = load_checkpoint(folder.of(last, "model"))
        progress.console.print(f"final recovery: {epochs} epochs of {last.name}")
        trained = run.data.train(Trainee(student, (meta["base_spec"], meta["plans"])), run.teacher, epochs, work, cfg,
                                 progress)
        save_checkpoint(
            work / "model", base_spec=meta["base_spec"], plans=meta["plans"], model=student,
            input_shape=cfg.input_shape, input_dtype=run.data.input_dtype, metadata={"recovery_of": last.dir},
        )
        evidence = run.data.evidence(student, work, cfg)
        shutil.copy2(folder.of(last, "profile.json"), work / "profile.json")
        metric = run.data.task.quality(cfg.budget.quality.name)
        checks = decide(evidence,
                        [QualityLimit(metric.shown(last.metrics, "the final recovery", last.name), metric,
                                      name=f"{metric.name}.{metric.bound}", label=f"{last.name}'s"), Parity()])
        why = f"after {trained.epochs} more epochs: {reason(checks)}"
        shutil.rmtree(work / "distill", ignore_errors=True)
        final = folder.steps / "recovery"
        publish_dir(work, final)
        entry = RecoveryEntry.model_validate({
            **last.carried(),  # the structure and its latency verdicts are the last step's
            "dir": str(final.relative_to(folder.root)), "distill": trained, "accepted": passed(checks),
            "reason": why, "checks": [c.to_dict() for c in checks], "message": run.message, **evidence.summary(),
        })
        run.record(entry)
        progress.console.print(f"final recovery: {'accepted' if entry.accepted else 'rejected'}: {why}")
