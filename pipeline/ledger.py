"""``ledger.jsonl``: one JSON line per attempted spiral step, appended atomically.

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced, so a run
killed mid-write leaves at most one truncated last line; ``read_ledger`` drops it (and
``repair_ledger`` removes it) so a resumed run never mistakes it for a finished step.

A line is one ``LedgerEntry``: a typed record, validated when it is read (a line that is not one is
refused with one line naming the field), and stamped with the ledger ``version`` it was written
in; a line of a newer version than this spiral reads is refused rather than misread (lines
without one are version 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from spiralprune import __version__
from spiralprune.deploy.errors import InputError
from spiralprune.deploy.validation import contained

MAX_LINE_BYTES = 1 << 20  # a step's line takes a few kB
VERSION = 2  # 2: the task's metric (``metric``, ``quality``, ``metrics``) in place of ``accuracy`` and ``f1_macro``


class Training(BaseModel):
    """What a line's model was trained: ``epochs`` in all, ``recovery_epochs`` of them the final recovery's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    best_val_quality: float | None  # the task's metric on the validation split, as training picked its best epoch
    epochs: int
    recovery_epochs: int = 0


class LedgerEntry(BaseModel):
    """One finished line of the spiral: a try of a step, the final recovery or the INT8 stage.

    The plan fields say what the try aimed at and removed (a recovery or a quantization carries its
    model's); the verdict fields are the judge's paired verdicts (the step budget first on a try,
    then the final questions) and the speedup over the teacher with its interval; the measured
    fields are the model's latency summary and ``spiralprune.pipeline.measure.CandidateMeasurement.summary``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = VERSION
    spiral: str | None = None  # the spiral that wrote the line (stamped by ``append_entry``)
    kind: Literal["step", "recovery", "quantize"] = "step"
    step: int
    attempt: int
    dir: str
    accepted: bool
    reason: str
    message: str | None = None  # how the loop ended (recovery, quantize)
    # the plan
    reduction: float | None = None
    target_ms: float
    reference: str
    ratio: float
    blocks: list[str] = []  # residual blocks the plan removed whole
    allocation: str
    predicted_ms: float | None = None
    candidates: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []  # the training probes that chose between plans of different structure
    predictor: dict[str, Any] | None = None
    # the chosen plan's calibrated table latency per layer (ms, by module name), beside its measured profile
    predicted_layers: dict[str, float] = {}
    distill: Training
    # the verdicts, and every check of the acceptance rules (``spiralprune.pipeline.acceptance.Check.to_dict``)
    verdicts: list[dict[str, Any]]
    checks: list[dict[str, Any]] = []
    meets_final: bool
    measure_s: float
    # a try's measuring session (``spiralprune.deploy.profiler.MeasuringSession.compiles``): models compiled now,
    # compiled files reused from the run's cache, models kept loaded across its plans; None on other lines
    compiles: dict[str, int] | None = None
    speedup: float
    speedup_ci: list[float]
    # the measured model
    latency_ms: dict[str, float]
    statistic_ms: float
    cv: float
    robust_cv: float
    stable: bool
    metric: str = "accuracy"  # the task's metric, which ``quality`` is the value of (a fraction for the built-in tasks)
    quality: float
    metrics: dict[str, float] = {}  # every number the task measured
    params: int | None = None
    macs: int | None = None
    size_mb: float
    parity: dict[str, Any] | None = None
    # the INT8 stage
    quantize_of: str | None = None
    quantize: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A version 1 line (classification only) read as version 2: its accuracy is the quality."""
        if isinstance(data, dict) and data.get("version", 1) == 1 and "accuracy" in data:
            data = dict(data)
            accuracy, f1 = data.pop("accuracy"), data.pop("f1_macro", None)
            numbers = {"accuracy": accuracy, **({"f1_macro": f1} if f1 is not None else {})}
            data.update(version=VERSION, metric="accuracy", quality=accuracy, metrics=numbers)
            if isinstance(data.get("distill"), dict) and "best_val_accuracy" in data["distill"]:
                training = dict(data["distill"])
                training["best_val_quality"] = training.pop("best_val_accuracy")
                data["distill"] = training
        return data

    @property
    def name(self) -> str:
        if self.kind == "recovery":
            return "final recovery"
        if self.kind == "quantize":
            return "INT8 quantization"
        return f"step {self.step} try {self.attempt}"

    def to_json(self) -> dict[str, Any]:
        """The line as a report shows it: every field, and its ``name``."""
        return {**self.model_dump(mode="json"), "name": self.name}


def append_entry(path: Path, entry: LedgerEntry) -> None:
    stamped = entry.model_copy(update={"spiral": __version__})
    line = (json.dumps(stamped.model_dump(mode="json"), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[LedgerEntry]:
    """Every complete line; a final line without its newline (a killed write) is ignored.

    A line that is not a ``LedgerEntry`` of a version this spiral reads, is longer than
    ``MAX_LINE_BYTES`` or names a step folder (``dir``) outside the run folder is refused with an
    InputError.
    """
    if not path.exists():
        return []
    entries = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{path}: line {number} is longer than {MAX_LINE_BYTES >> 10} KiB")
            if not raw.endswith(b"\n"):
                break
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: line {number} is not JSON ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("dir", ""), str):
                raise InputError(f"{path}: line {number} is not a ledger entry (a JSON object with a string 'dir')")
            version = data.get("version", 1)
            if type(version) is not int or not 1 <= version <= VERSION:
                raise InputError(f"{path}: line {number} is of ledger version {version!r}; this spiral reads "
                                 f"versions 1 to {VERSION}: resume or report it with the spiral that wrote it")
            # Where the line points is checked before what it says: a hostile path is named as one.
            contained(path.parent, data.get("dir", ""), f"{path}: line {number}: step folder")
            try:
                entries.append(LedgerEntry.model_validate(data))
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"]) or "the line"
                raise InputError(f"{path}: line {number} is not a ledger entry ({where}: {error['msg']})") from None
    return entries


def repair_ledger(path: Path) -> None:
    """Cut a truncated last line left by a killed write."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
