"""The spiral controller: the run's passes, one after the other, on the teacher measured once.

A run is a list of passes (``spiralprune.pipeline.passes``, built from its config): the spiral's steps
(prune → distill → export → profile → evaluate → accept or back off), then the final recovery of a
result short of its final budget, then, with ``quantize:``, the INT8 pass. Each pass goes on from the
last accepted model and writes one ledger line per model it proposes.

Every latency verdict is the judge's (``spiralprune.deploy.verdict``): the candidate, the current model and
the teacher are loaded once and measured in alternating rounds; the step budget is a question on
the per-round ratio to the current model, the final budget on the ratio to the teacher (and on the
candidate's own rounds for ``max_ms``). ``undecided`` after the time cap rejects the step.

State lives on disk so that a run killed at any point resumes where it stopped: the ledger says
which attempts finished and which passes ran; an attempt's working folder keeps its chosen plan and
its distillation checkpoints until the attempt is published with its ledger line.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from spiralprune.core.atomic import publish_dir, write_bytes
from spiralprune.pipeline.acceptance import format_value
from spiralprune.pipeline.budget import FinalBudget, quality_text
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.data import DataSplits
from spiralprune.pipeline.nodes import Board, announcing
from spiralprune.pipeline.passes import build_passes
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.passes.run import Run
from spiralprune.pipeline.report.run import met_budget, write_reports
from spiralprune.pipeline.run_folder import RunFolder, last_accepted
from spiralprune.pipeline.tasks import Metric
from spiralprune.pipeline.teacher import RunData, load_teacher, measure_teacher
from spiralprune.pipeline.training import Trainee


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

    def run(self) -> SpiralOutcome:
        """The run; on several nodes, its jobs and its end announced to the other nodes' followers."""
        with announcing(self.folder, self.config.distributed) as board:
            return self._run(board)

    def _run(self, board: Board | None) -> SpiralOutcome:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.data = RunData.load(cfg, self.given_data, board)  # before the folder is written: bad data writes nothing
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
                f"teacher: {budget.latency.statistic} {budget.teacher_ms:.3f} ms, {budget.metric.name} "
                f"{format_value(budget.teacher_quality, budget.metric.unit)}; final budget: {budget.describe()}"
            )
            run = Run(cfg, self.folder, self.data, Trainee(teacher, (base_spec, plans)), budget, progress)
            for stage in build_passes(cfg):
                stage.run(run)
        message = run.message
        entries = self.folder.entries()
        for e in entries:
            if e.kind != "step":
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


def result_line(folder: RunFolder, last: LedgerEntry | None, metric: Metric) -> str:
    """``result: runs/x/model.onnx (...), checkpoint runs/x/model/``: the last thing a run prints."""
    what = (f"{last.name}, {last.speedup:.2f}x the teacher at {quality_text(last, metric)}"
            if last is not None else "the teacher, unchanged: no step was accepted")
    return f"result: {folder.model_onnx} ({what}); checkpoint {folder.model}/"
