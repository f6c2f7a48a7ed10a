"""The bf16 pass's ledger line."""

from __future__ import annotations

from typing import Literal

from spiralprune.pipeline.passes.record import LedgerEntry


class Bf16Entry(LedgerEntry):
    """The last accepted model with its weights rounded to bfloat16; its structure and latency are that model's."""

    kind: Literal["bf16"] = "bf16"
    message: str  # how the steps ended
    rounded_of: str  # the line of the model it rounded (its ``dir``)
    max_change: float  # the largest change of a weight

    @property
    def name(self) -> str:
        return "bf16 weights"
