"""The INT8 pass's ledger line."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from spiralprune.pipeline.passes.record import LedgerEntry


class QuantizeEntry(LedgerEntry):
    """The INT8 model of the last accepted one: its structure is the float model's, the rest the INT8 model's."""

    has_checkpoint: ClassVar[bool] = False
    kind: Literal["quantize"] = "quantize"
    message: str  # how the steps ended
    quantize_of: str  # the float model's line (its ``dir``)
    quantize: dict[str, Any]  # ``spiralprune.pipeline.passes.int8.model.QuantizeResult.to_dict``

    @property
    def name(self) -> str:
        return "INT8 quantization"
