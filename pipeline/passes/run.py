"""What the passes of one run share: its config, folder, data, teacher and final budget, and how the
steps ended. A pass reads the ledger through it and adds its lines to it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.progress import Progress

from spiralprune.pipeline.budget import FinalBudget
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.ledger import append_entry
from spiralprune.pipeline.passes import later_kinds
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.teacher import RunData
from spiralprune.pipeline.training import Trainee


@dataclass
class Run:
    """A run as its passes see it. ``teacher`` is the model the run started from (and distils from);
    ``message`` says how the steps ended, which every line after theirs records."""

    config: RunConfig
    folder: RunFolder
    data: RunData
    teacher: Trainee
    budget: FinalBudget
    progress: Progress
    message: str = ""

    def entries(self) -> list[LedgerEntry]:
        return self.folder.entries()

    def ended(self, kind: str) -> list[LedgerEntry]:
        """The lines of the passes after ``kind``'s: when there are any, ``kind``'s pass has ended (a resumed run)."""
        later = later_kinds(kind)
        return [e for e in self.entries() if e.kind in later]

    def ran(self, kind: str) -> bool:
        """Whether ``kind``'s pass has run: its line or a later pass's is in the ledger (a resumed run)."""
        return any(e.kind == kind for e in self.entries()) or bool(self.ended(kind))

    def record(self, entry: LedgerEntry) -> None:
        """``entry`` appended to the ledger: the pass's model is done (``spiralprune.pipeline.ledger``)."""
        append_entry(self.folder.ledger, entry)
