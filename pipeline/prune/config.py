"""What one pruning step removes: the criterion, how much, where, and how channel counts are aligned."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, field_validator

from spiralprune.pipeline.prune.criteria import CRITERIA


class PruneConfig(BaseModel):
    """One pruning step.

    - ``criterion``: a name from ``spiralprune.pipeline.prune.criteria.CRITERIA`` (``l1``, ``l2``, ``fpgm``, ``taylor``
      from NNI; ``tp-magnitude``, ``tp-taylor``, ``tp-bn-scale`` from Torch-Pruning, all normalised per
      layer; ``taylor-group``, the estimated loss change per channel, and ``sensitivity``, the loss
      change measured for removing each eighth of a group in that order, both comparable across layers).
    - ``ratio``: fraction of the channels (of the heads, in attention layers) removed in this step.
    - ``global_pruning``: rank channels of all groups together instead of removing ``ratio`` from each.
    - ``per_layer``: module name (or a prefix such as ``layer4``) -> ratio for the groups it belongs to.
    - ``ignored_layers``: module names (or prefixes) whose parameters keep their shapes.
    - ``protect_first_last``: the stem (every convolution that reads the model input) keeps its output
      channels; the output layer always keeps its outputs, since they are the model's output.
    - ``round_to``: kept channel counts are rounded to the nearest multiple (at least one multiple).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str = "l1"
    ratio: float = 0.3
    global_pruning: bool = False
    per_layer: dict[str, float] = {}
    ignored_layers: list[str] = []
    protect_first_last: bool = True
    round_to: int | None = None

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str) -> str:
        if value not in CRITERIA:
            raise ValueError(f"unknown pruning criterion '{value}'; valid: {', '.join(CRITERIA)}")
        return value

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not math.isfinite(value) or not 0 < value < 1:
            raise ValueError(f"ratio must be between 0 and 1 (exclusive), got {value}")
        return value

    @field_validator("per_layer")
    @classmethod
    def _per_layer(cls, value: dict[str, float]) -> dict[str, float]:
        for name, ratio in value.items():
            if not math.isfinite(ratio) or not 0 <= ratio < 1:
                raise ValueError(f"per_layer ratio for '{name}' must be in [0, 1), got {ratio}")
        return value

    @field_validator("round_to")
    @classmethod
    def _round_to(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"round_to must be a positive channel multiple such as 8, 16 or 32, got {value}")
        return value
