"""A try's ledger line: what the try aimed at, the plans it screened and measured, and its probes."""

from __future__ import annotations

import math
from typing import Any, Literal

from spiralprune.pipeline.passes.record import LedgerEntry


class StepEntry(LedgerEntry):
    """A try of a spiral step (``spiralprune.pipeline.passes.steps.tries.Tries.attempt``)."""

    kind: Literal["step"] = "step"
    reduction: float | None = None
    predicted_ms: float | None = None
    plans: list[dict[str, Any]] = []  # every plan the try screened (``ScreenedPlan.record``)
    probes: list[dict[str, Any]] = []  # the training probes that chose between plans of different structure
    predictor: dict[str, Any] | None = None
    # the chosen plan's calibrated table latency per layer (ms, by module name), beside its measured profile
    predicted_layers: dict[str, float] = {}
    # the try's measuring session (``spiralprune.deploy.profiler.MeasuringSession.compiles``): models compiled now,
    # compiled files reused from the run's cache, models kept loaded across its plans; and the compiled files
    # removed from the cache when the try ended (``evicted``, ``evicted_mb``: all but the teacher's and the
    # current model's when rejected; absent in lines written before eviction)
    compiles: dict[str, int | float] | None = None

    @property
    def name(self) -> str:
        return f"step {self.step} try {self.attempt}"

    @property
    def epochs_spent(self) -> int:
        return self.distill.epochs + probe_cost(self.probes)


def probe_cost(probes: list[dict] | tuple[dict, ...]) -> int:
    """The whole epochs a try's probes spend from ``schedule.total_epochs``: their shares, rounded up."""
    return math.ceil(sum(p["epochs"] for p in probes) - 1e-9)
