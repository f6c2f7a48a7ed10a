"""The INT8 pass (a run's ``quantize:`` block): the result's ONNX model quantized on training batches
(some operators kept float, or the model recovered from the teacher through simulated INT8, when that
loses too much: ``spiralprune.pipeline.passes.int8.model``), measured beside it and the teacher, and
accepted only when the judge grants the speedup over the float model, the metric's drop is within
``quantize.max_drop`` and the run's floor holds. A rejected one leaves the float model as the result
(the ledger line says why). A killed pass starts again from the float model. Its quantization-aware
recovery trains in this process whatever ``distributed:`` says: the module it trains carries
simulated-INT8 parametrizations and hooks, which no job file can carry (``spiralprune.pipeline.training``)."""

from __future__ import annotations

import dataclasses
import shutil
from typing import ClassVar

from spiralprune.core.atomic import publish_dir
from spiralprune.pipeline.budget import paired_speedup
from spiralprune.pipeline.checkpoint import load_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.measure import latency_summary, measuring_session
from spiralprune.pipeline.passes.int8.config import QuantizeConfig
from spiralprune.pipeline.passes.int8.model import Trainable, int8_model, judge_quantized
from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8
from spiralprune.pipeline.passes.int8.record import QuantizeEntry
from spiralprune.pipeline.passes.record import Training
from spiralprune.pipeline.passes.run import Run
from spiralprune.pipeline.run_folder import last_accepted


class Int8:
    kind: ClassVar[str] = "quantize"

    def __init__(self, config: QuantizeConfig):
        self.config = config

    @classmethod
    def planned(cls, config: RunConfig) -> Int8 | None:
        return None if config.quantize is None else cls(config.quantize)

    def run(self, run: Run) -> None:
        last = last_accepted(run.entries())
        if last is None or run.ran(self.kind):
            return
        cfg, q, budget, folder, progress = run.config, self.config, run.budget, run.folder, run.progress
        work = folder.steps / ".quantize"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        float_onnx = folder.of(last, "model.onnx")
        progress.console.print(f"quantize: INT8 ({q.method}, {q.calibration_batches} calibration batches) of {last.name}")
        trainable = Trainable(load_checkpoint(folder.of(last, "model"))[0], run.teacher.module, run.data.example_input,
                              cfg.distill, progress)
        made = int8_model(float_onnx, work / "model.onnx", run.data.splits.calibration, run.data.splits.val,
                          run.data.task, q, trainable)
        for remedy in made.reasons:
            progress.console.print(f"quantize: {remedy}")
        finals = tuple(budget.final_questions(subject=INT8))
        with measuring_session(cfg, folder.compiled) as session:
            result = judge_quantized(
                float_onnx, work / "model.onnx", session, cfg.target.profile, made, q,
                others={"teacher": folder.teacher_onnx}, questions=finals,
                rules=(budget.quality_rule(),), metric=budget.metric,
            )
        # The run's last measurement: what is kept of its compiled files is the teacher's and its result's
        session.evict(keep=("teacher", INT8 if result.accepted else FLOAT))
        result = dataclasses.replace(result, compiles=dict(session.compiles))
        result.paired.profiles[INT8].save(work / "profile.json")
        final = folder.steps / "quantize"
        publish_dir(work, final)
        verdicts = [result.paired.verdict(question.name) for question in finals]
        entry = QuantizeEntry.model_validate({
            **last.carried(),  # the structure is the float model's; the rest is the INT8 model's
            "dir": str(final.relative_to(folder.root)), "quantize_of": last.dir,
            "verdicts": [result.paired.verdict("int8 vs float").to_dict(), *(v.to_dict() for v in verdicts)],
            "meets_final": all(v.meets for v in verdicts), "measure_s": result.paired.rounds.wall_s,
            "distill": Training(best_val_quality=None, epochs=0), "accepted": result.accepted,
            "reason": result.reason, "checks": [c.to_dict() for c in result.checks], "quantize": result.to_dict(),
            "message": run.message, "quality": result.accuracy[INT8] / budget.metric.scale,
            "metrics": {budget.metric.name: result.accuracy[INT8] / budget.metric.scale},
            "size_mb": result.size_mb[INT8], "parity": None,
            **paired_speedup(result.paired, budget.latency.statistic, subject=INT8),
            **latency_summary(result.paired.profiles[INT8], budget.latency.statistic),
        })
        run.record(entry)
        verdict = "accepted" if entry.accepted else "rejected: the float model stays the result"
        progress.console.print(f"quantize: {verdict}: {entry.reason}")
