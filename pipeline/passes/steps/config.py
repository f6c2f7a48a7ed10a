"""The steps' config block, ``schedule:`` in a run config (the final recovery's epochs are in it too)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScheduleConfig(BaseModel):
    """How much each step asks for: by default the final budget; with a number, NetAdapt's reduction that decays.

    ``initial_reduction``: what step 1 asks for, a fraction of the current model's latency, or
    ``final`` (the default): the final budget in one step, every later step too, a rejected try
    asking for ``backoff`` times that reduction. ``benchmarks/quality_frontier.py`` favoured it
    (2026-12-06, runs 11-12, with layer-wise pruning): one step to the budget with every epoch on
    that structure was as accurate as a spiral of halving steps at 3x and more accurate at 4x, at
    more speed, on both architectures.

    ``allocation`` is how a step's plans are made (see ``spiralprune.pipeline.passes.steps.plan_search``): ``latency``
    keeps the most importance per predicted millisecond saved; ``uniform`` removes one ratio from
    every group. Either way plans are screened by predicted latency before any is measured.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    initial_reduction: Annotated[float, Field(gt=0, lt=1)] | Literal["final"] = "final"
    decay: float = Field(0.9, gt=0, le=1)
    backoff: float = Field(0.5, gt=0, lt=1)
    max_steps: int = Field(6, ge=1)
    patience: int = Field(2, ge=0)
    # The largest fraction of a group's channels removed: with latency allocation over the whole run,
    # counted from the teacher (no group is cut below what the uniform ratio max_ratio leaves it,
    # rounded as that ratio is: the run's floor is that uniform structure); with uniform
    # allocation, the largest ratio one step asks for.
    max_ratio: float = Field(0.8, gt=0, lt=1)
    allocation: Literal["latency", "uniform"] = "latency"
    # With ``latency`` allocation, how a step whose plan removes no residual block spreads its cut
    # over the groups: ``knapsack`` (the default), as the latency knapsack spread it; ``uniform``, the
    # least uniform ratio judged to meet the step's limit (searched and measured after the knapsack's
    # plan, which stays the choice when no uniform ratio meets). The knapsack prices channels by their
    # importance before training, and on the plain net its spread lost to one ratio at the budget
    # (docs/landing: -2.06 +- 1.66 points at 3x; -1.67 +- 0.95 with ``uniform``, within the noise); but
    # a uniform ratio ignores the latency staircase where ``prune.round_to`` is unset (the README's CNN
    # at 2x: 2.78x and 98.24 % with ``uniform``, 2.27x and 98.74 % with the knapsack), so it is not the default.
    channel_spread: Literal["uniform", "knapsack"] = "knapsack"
    # With ``latency`` allocation, residual blocks may be removed whole (layer-wise pruning,
    # ``spiralprune.pipeline.prune.blocks``), weighed in the same knapsack as channels by their measured
    # loss rise per millisecond saved; needs a criterion comparable across layers (the default).
    remove_blocks: bool = True
    # Epochs of final recovery: the try whose plan meets the final budget (judged before it is
    # trained) trains them after its own epochs in one schedule; a run that ends short of the final
    # budget gives them to its last accepted model (its structure, hence its latency, stays as
    # measured); 0 = none. ``total_epochs`` is a training budget for the whole run: each try trains
    # at most what is left of it after the ``final_epochs`` kept for the recovery (the loop stops
    # when nothing is left), and the recovery gets whatever the tries left, so rejected tries cannot
    # eat the recovery.
    final_epochs: int = Field(0, ge=0)
    total_epochs: int | None = Field(None, ge=1)
    # When a step's chosen plan removes residual blocks and a block-free plan also meets the budget,
    # each is trained for this fraction of an epoch (the same batches, the same seed) and the more
    # accurate one goes on (``spiralprune.pipeline.passes.steps.tries``); 0 (the default) = choose by predicted loss alone.
    # The probes' epochs, rounded up per try, are spent from ``total_epochs``. Off by default: on the
    # digits ResNet at 3x (docs/landing/2026-12-06.md, 3 seeds) they agreed with the prediction in every
    # step they ran (87.8 % vs 20.6 %, 94.2 % vs 28.3 % after a quarter epoch), changed no result and
    # added 10-15 % to the run's wall time.
    probe_epochs: float = Field(0.0, ge=0, le=1)
    # Stop before step 1 when the final budget is below the floor pruning can reach (every group at
    # its fewest channels, predicted from the operator table; see ``spiralprune.pipeline.passes.steps.stage.below_floor``).
    stop_at_floor: bool = True

    @model_validator(mode="after")
    def _budget_leaves_steps(self) -> "ScheduleConfig":
        if self.total_epochs is not None and self.final_epochs >= self.total_epochs:
            raise ValueError(f"schedule.final_epochs ({self.final_epochs}) must be less than total_epochs "
                             f"({self.total_epochs}): the steps need epochs too")
        return self
