"""The bf16 pass: the last accepted model's weights rounded to bfloat16, exported, its parity checked
and its metric evaluated; accepted when the metric is at least the model's it rounded."""

from __future__ import annotations

import shutil
from typing import ClassVar

import torch

from spiralprune.core.atomic import publish_dir
from spiralprune.pipeline.acceptance import Parity, QualityLimit, decide, passed, reason
from spiralprune.pipeline.checkpoint import load_checkpoint, save_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.passes.record import Training
from spiralprune.pipeline.passes.run import Run
from spiralprune.pipeline.run_folder import last_accepted
from tests.pipeline.passes.bf16.record import Bf16Entry


class Bf16:
    kind: ClassVar[str] = "bf16"

    @classmethod
    def planned(cls, config: RunConfig) -> Bf16:
        return cls()

    def run(self, run: Run) -> None:
        last = last_accepted(run.entries(), with_checkpoint=True)
        if last is None or run.ran(self.kind):
            return
        work, final = run.folder.steps / ".bf16", run.folder.steps / "bf16"
        shutil.rmtree(work, ignore_errors=True)
        model, meta = load_checkpoint(run.folder.of(last, "model"))
        with torch.no_grad():
            changes = [(p - p.bfloat16().float()).abs().max().item() for p in model.parameters()]
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
        save_checkpoint(work / "model", base_spec=meta["base_spec"], plans=meta["plans"], model=model,
                        input_shape=run.config.input_shape, input_dtype=run.data.input_dtype)
        evidence = run.data.evidence(model, work, run.config)
        shutil.copy2(run.folder.of(last, "profile.json"), work / "profile.json")
        metric = run.data.task.quality(run.config.budget.quality.name)
        checks = decide(evidence,
                        [QualityLimit(metric.shown(last.metrics, "bf16 weights", last.name), metric,
                                      name=f"{metric.name}.{metric.bound}", label=f"{last.name}'s"), Parity()])
        publish_dir(work, final)
        run.record(Bf16Entry.model_validate({
            **last.carried(), "dir": str(final.relative_to(run.folder.root)), "accepted": passed(checks),
            "reason": reason(checks), "checks": [c.to_dict() for c in checks], "message": run.message,
            "distill": Training(best_val_quality=None, epochs=0), "rounded_of": last.dir, "max_change": max(changes),
            **evidence.summary(),
        }))
