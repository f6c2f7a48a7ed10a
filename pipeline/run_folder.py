"""A spiralprune run folder: the one place that knows its layout and which model it holds.

    config.json           the run's config; a resume must bring the same one
    ledger.jsonl          one line per finished attempt, recovery or quantization (``spiralprune.pipeline.ledger``)
    teacher/model/        the teacher's checkpoint, when the run trained it
    teacher/model.onnx    the teacher as measured; summary.json its latency and accuracy (the budgets)
    compiled/             the target's compiled files (ONNX Runtime's optimized graphs, TensorRT engines),
                          keyed by the ONNX file's sha256 and the build's facts: reused by later steps, the
                          INT8 stage and a resumed run; when a try or the INT8 stage ends, all but the
                          teacher's and the model the run goes on from are evicted (TensorRT's timing
                          caches stay); deleting it costs only the builds again
    steps/NAME/           a published attempt: model/ (checkpoint), model.onnx, profile.json, eval.json,
                          plan.json; steps/.NAME/ is one in progress
    report.*, junit.xml   written at the end of every run (``spiralprune.pipeline.report``)
    model.onnx, model/    the run's result where a user looks for it, copied at the end of every run:
                          the result's ONNX file (INT8 when that stage was accepted) and its checkpoint
    nodes/                on several nodes: node 0's announcements to the others (``spiralprune.pipeline.nodes``)

Every path a ledger line names is checked to stay inside the folder. The run's result is its last
accepted line; an INT8 stage has an ONNX file but no checkpoint, so what a step goes on from (and
what ``spiralprune export`` exports) is the last accepted line with one.
"""

from __future__ import annotations

import json
from pathlib import Path

from spiralprune.core.atomic import write_json
from spiralprune.core.errors import InputError
from spiralprune.core.hashing import json_digest
from spiralprune.deploy.validation import contained
from spiralprune.pipeline.ledger import read_ledger, repair_ledger
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.specs import former_spellings

LEDGER = "ledger.jsonl"
RUN_REPORT_KIND = "spiral-run"  # report.json's "kind", which ``spiralprune compare`` recognises
MAX_CONFIG_BYTES = 1 << 20  # a run's config.json takes a few kB


def config_digest(data: dict) -> str:
    return json_digest(data, 16)


def last_accepted(entries: list[LedgerEntry], *, with_checkpoint: bool = False) -> LedgerEntry | None:
    """The run's result so far: its last accepted line (with ``with_checkpoint``, the last that has a model/)."""
    accepted = [e for e in entries if e.accepted and (e.has_checkpoint or not with_checkpoint)]
    return accepted[-1] if accepted else None


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.ledger = self.root / LEDGER
        self.teacher = self.root / "teacher"
        self.teacher_onnx = self.teacher / "model.onnx"
        self.compiled = self.root / "compiled"
        self.steps = self.root / "steps"
        self.report = self.root / "report.json"
        self.model_onnx = self.root / "model.onnx"
        self.model = self.root / "model"
        self.nodes = self.root / "nodes"

    def start(self, config: dict, *, resume: bool) -> None:
        """Write ``config`` into a new run folder, or (``resume``) check it is the config the run
        in this folder was started with (as this spiral reads it, and naming spiral's own factories as
        they were spelled then: ``former_spellings``); a ledger line cut by a kill is removed."""
        if self.ledger.exists() or self.config.exists():
            if not resume:
                raise InputError(f"{self.root} already holds a run; pass --resume to continue it or choose another --out")
            contained(self.root, self.config.name, "run folder:")
            try:
                if self.config.stat().st_size > MAX_CONFIG_BYTES:
                    raise ValueError(f"larger than {MAX_CONFIG_BYTES >> 10} KiB")
                stored = json.loads(self.config.read_text())
            except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise InputError(f"{self.config} is not a spiralprune run config ({exc})") from None
            if not isinstance(stored, dict):
                raise InputError(f"{self.config} is not a spiralprune run config (not a JSON object)")
            same = {config_digest(c) for c in [config, *former_spellings(config)]}
            if config_digest(stored) not in same and config_digest(_as_today(stored)) not in same:
                raise InputError(f"{self.root} was started with a different config; --resume needs the same one")
        elif resume and self.root.exists() and any(self.root.iterdir()):
            raise InputError(f"{self.root} holds no spiralprune run to resume")
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.config, config)
        repair_ledger(self.ledger)

    @staticmethod
    def holds_run(path: Path) -> bool:
        return (Path(path) / LEDGER).is_file()

    def entries(self) -> list[LedgerEntry]:
        return read_ledger(self.ledger)

    def of(self, entry: LedgerEntry, name: str = "") -> Path:
        """A file or folder of a ledger line's step, refused when it leads out of the run folder."""
        return contained(self.root, Path(entry.dir) / name, "run folder:")

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


def _as_today(stored: dict) -> dict:
    """A config a run folder holds as this spiral reads it: keys added since it was written take their
    defaults (``schedule.channel_spread``, ``parity.outputs``), version 1 is migrated; a config this
    spiral cannot read is returned as it is (so it differs)."""
    from spiralprune.pipeline.config import parse_config

    try:
        return parse_config(stored).model_dump(mode="json")
    except InputError:
        return stored
