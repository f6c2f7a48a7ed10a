"""The final recovery's ledger line."""

from __future__ import annotations

from typing import Literal

from spiralprune.pipeline.passes.record import LedgerEntry


class RecoveryEntry(LedgerEntry):
    """The last accepted model trained more epochs; its structure and latency verdicts are that model's."""

    kind: Literal["recovery"] = "recovery"
    message: str  # how the steps ended

    @property
    def name(self) -> str:
        return "final recovery"
