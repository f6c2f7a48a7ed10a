"""The base of every file spiral reads into a model (run configs, budgets, target profiles, job files,
node announcements): an unknown key is refused (a typo is an error, not a silently ignored setting),
a value read is frozen, and NaN or infinity is no number a user means. One class, so that every reader
refuses the same things."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
