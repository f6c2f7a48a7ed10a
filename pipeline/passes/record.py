"""What every ledger line says, whichever pass wrote it: the base of each pass's record.

A line is the model a pass proposed and its evidence: where it lies (``dir``), the verdict and its
checks (``spiralprune.pipeline.acceptance.Check.to_dict``), the plan that made its structure (a recovery
or an INT8 model carries its model's), the judge's paired verdicts and the speedup over the teacher
with its interval, its measured latency summary and ``spiralprune.pipeline.acceptance.Evidence.summary``.
Each pass adds its own fields in its folder's ``record.py``; ``kind`` tells the records apart
(``spiralprune.pipeline.ledger`` reads a line as its kind's record).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

VERSION = 4  # 2: the task's metric in place of ``accuracy``; 3: one record per pass kind, each with its own fields;
# 4: one meaning per word: a try's latency aim is ``goal_ms`` (was ``target_ms``), its screened plans ``plans``
# (was ``candidates``)


class Training(BaseModel):
    """What a line's model was trained: ``epochs`` in all, ``recovery_epochs`` of them the final recovery's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    best_val_quality: float | None  # the task's metric on the validation split, as training picked its best epoch
    epochs: int
    recovery_epochs: int = 0


class LedgerEntry(BaseModel):
    """One finished line of a run: the fields every pass's record has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Whether the line's folder holds the PyTorch checkpoint of its model (``model/``), which a later pass
    # may go on from; an INT8 model has only its ONNX file.
    has_checkpoint: ClassVar[bool] = True
    version: int = VERSION
    spiral: str | None = None  # the spiral that wrote the line (stamped by ``append_entry``)
    kind: str
    step: int
    attempt: int
    dir: str
    accepted: bool
    reason: str
    # the plan that made the model's structure
    goal_ms: float  # the latency the try aimed at: the step budget, in ms
    reference: str
    ratio: float
    blocks: list[str] = []  # residual blocks the plan removed whole
    allocation: str
    distill: Training
    # the verdicts, and every check of the acceptance rules
    verdicts: list[dict[str, Any]]
    checks: list[dict[str, Any]] = []
    meets_final: bool
    measure_s: float
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

    @property
    @abstractmethod
    def name(self) -> str:
        """The line as the run's output and reports name it."""

    @property
    def epochs_spent(self) -> int:
        """The training epochs the line spent (``schedule.total_epochs`` counts them)."""
        return self.distill.epochs

    def carried(self) -> dict[str, Any]:
        """The fields every record has, as a later pass's line about this line's model starts from them."""
        return self.model_dump(include=set(LedgerEntry.model_fields) - {"version", "spiral", "kind"})

    def to_json(self) -> dict[str, Any]:
        """The line as a report shows it: every field, and its ``name``."""
        return {**self.model_dump(mode="json"), "name": self.name}


def epochs_spent(entries: list[LedgerEntry]) -> int:
    """The training epochs the ledger's lines spent (every try, its probes and the recovery)."""
    return sum(e.epochs_spent for e in entries)
