"""The passes a run is made of, in the order they run: the registry.

A pass takes the run's current model and its evidence (the last accepted ledger line) and proposes
new models, each judged and written as one ledger line of the pass's kind. Each pass is a folder
here: its stage (the code that runs it), its ledger record and, when it has one, its config block.
Adding a stage is adding a folder and its entry in ``PASSES``; the spiral runs what the registry
lists (``build_passes``). The records are imported here, the stages only when a run builds its
passes (``Registered.stage`` names one), so that reading a ledger imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Protocol

from spiralprune.pipeline.passes.int8.record import QuantizeEntry
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.passes.recovery.record import RecoveryEntry
from spiralprune.pipeline.passes.steps.record import StepEntry

if TYPE_CHECKING:
    from spiralprune.pipeline.config import RunConfig
    from spiralprune.pipeline.passes.run import Run


class Pass(Protocol):
    """One stage of a run. ``planned`` is the pass a run config asks for (None: it asks for none);
    ``run`` proposes, judges and records its models, or (a resumed run) does what is left of that."""

    @classmethod
    def planned(cls, config: RunConfig) -> Pass | None: ...

    def run(self, run: Run) -> None: ...


@dataclass(frozen=True)
class Registered:
    """A pass: its ledger record (whose ``kind`` names the pass) and its stage, ``module:Class``."""

    record: type[LedgerEntry]
    stage: str

    @property
    def kind(self) -> str:
        return self.record.model_fields["kind"].default

    def planned(self, config: RunConfig) -> Pass | None:
        module, name = self.stage.split(":")
        return getattr(import_module(module), name).planned(config)


PASSES: dict[str, Registered] = {entry.kind: entry for entry in (
    Registered(StepEntry, "spiralprune.pipeline.passes.steps.stage:Steps"),
    Registered(RecoveryEntry, "spiralprune.pipeline.passes.recovery.stage:Recovery"),
    Registered(QuantizeEntry, "spiralprune.pipeline.passes.int8.stage:Int8"),
)}


def build_passes(config: RunConfig) -> list[Pass]:
    """The passes ``config`` asks for, in the registry's order."""
    return [stage for entry in PASSES.values() if (stage := entry.planned(config)) is not None]


def later_kinds(kind: str) -> list[str]:
    """The kinds of the passes registered after ``kind``'s: a line of one says that ``kind``'s pass has ended."""
    kinds = list(PASSES)
    return kinds[kinds.index(kind) + 1:]
