"""A spiral run folder: the one place that knows its layout and which model it holds.

    config.json           the run's config; a resume must bring the same one
    ledger.jsonl          one line per finished attempt, recovery or quantization (``pipeline.ledger``)
    teacher/model/        the teacher's checkpoint, when the run trained it
    teacher/model.onnx    the teacher as measured; summary.json its latency and accuracy (the budgets)
    steps/NAME/           a published attempt: model/ (checkpoint), model.onnx, profile.json, eval.json,
                          plan.json; steps/.NAME/ is one in progress
    report.*, junit.xml   written at the end of every run (``pipeline.report``)

Every path a ledger line names is checked to stay inside the folder. The run's result is its last
accepted line; an INT8 stage has an ONNX file but no checkpoint, so what a step goes on from (and
what ``spiral export`` exports) is the last accepted line with one.
"""

from __future__ import annotations

from pathlib import Path

from deploy.errors import InputError
from deploy.validation import contained
from pipeline.ledger import read_ledger

LEDGER = "ledger.jsonl"
RUN_REPORT_KIND = "spiral-run"  # report.json's "kind", which ``spiral compare`` recognises


def last_accepted(entries: list[dict], *, with_checkpoint: bool = False) -> dict | None:
    """The run's result so far: its last accepted line (with ``with_checkpoint``, the last that has a model/)."""
    accepted = [e for e in entries if e["accepted"] and not (with_checkpoint and e.get("kind") == "quantize")]
    return accepted[-1] if accepted else None


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.ledger = self.root / LEDGER
        self.teacher = self.root / "teacher"
        self.teacher_onnx = self.teacher / "model.onnx"
        self.steps = self.root / "steps"
        self.report = self.root / "report.json"

    @staticmethod
    def holds_run(path: Path) -> bool:
        return (Path(path) / LEDGER).is_file()

    def entries(self) -> list[dict]:
        return read_ledger(self.ledger)

    def of(self, entry: dict, name: str = "") -> Path:
        """A file or folder of a ledger line's step, refused when it leads out of the run folder."""
        return contained(self.root, Path(entry["dir"]) / name, "run folder:")

    def teacher_checkpoint(self) -> Path:
        return contained(self.root, "teacher/model", "run folder:")

    def result_checkpoint(self) -> Path:
        """The checkpoint of the last accepted step, else the teacher's."""
        last = last_accepted(self.entries(), with_checkpoint=True)
        path = self.of(last, "model") if last else self.teacher_checkpoint()
        if not path.is_dir():
            raise InputError(f"{self.root} holds no model checkpoint yet (no accepted step, no trained teacher)")
        return path

    def result_onnx(self) -> Path:
        """The ONNX model of the last accepted step (an INT8 stage's too), else the teacher's."""
        last = last_accepted(self.entries())
        for path in ([self.of(last, "model.onnx")] if last else []) + [self.teacher_onnx]:
            if path.is_file():
                return path
        raise InputError(f"{self.root} holds no exported model yet (no accepted step, no teacher/model.onnx): run it first")
