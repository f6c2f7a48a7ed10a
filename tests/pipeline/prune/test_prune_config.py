"""PruneConfig validates before any work starts."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from spiralprune.pipeline.prune import PruneConfig


def test_defaults() -> None:
    cfg = PruneConfig()
    assert (cfg.criterion, cfg.ratio, cfg.protect_first_last, cfg.round_to) == ("l1", 0.3, True, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ratio": 0.0}, "between 0 and 1"),
        ({"ratio": 1.0}, "between 0 and 1"),
        ({"ratio": math.nan}, "between 0 and 1"),
        ({"per_layer": {"layer1": 1.5}}, "per_layer ratio for 'layer1'"),
        ({"round_to": 0}, "round_to must be a positive"),
        ({"criterion": "magnitude"}, "valid: l1, l2"),
        ({"ratios": 0.3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_are_named(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PruneConfig(**fields)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        PruneConfig().ratio = 0.5  # type: ignore[misc]
