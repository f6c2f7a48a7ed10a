"""Whole ledger lines for tests that need a run folder without running a spiral."""

from __future__ import annotations

from typing import Any

from spiralprune.pipeline.passes import PASSES
from spiralprune.pipeline.passes.record import LedgerEntry, Training

# What each kind's record asks for beyond the fields every line has.
OWN_FIELDS: dict[str, dict[str, Any]] = {
    "step": {},
    "recovery": {"message": "stopped after max_steps=1"},
    "quantize": {"message": "stopped after max_steps=1", "quantize_of": "steps/step-01-try-1", "quantize": {}},
}


def ledger_entry(step: int = 1, attempt: int = 1, *, accepted: bool = True, ms: float = 1.0, accuracy: float = 0.9,
                 kind: str = "step", **fields: Any) -> LedgerEntry:
    """A line of ``kind`` (a try of ``step`` by default) measured at ``ms`` (p50, the statistic) with
    ``accuracy``; ``fields`` override the rest."""
    line: dict[str, Any] = {
        "step": step, "attempt": attempt, "dir": f"steps/step-{step:02d}-try-{attempt}", "accepted": accepted,
        "reason": "within budget" if accepted else "rejected", "goal_ms": ms, "reference": "teacher",
        "ratio": 0.25, "allocation": "latency", "distill": Training(best_val_quality=accuracy, epochs=1),
        "verdicts": [], "meets_final": accepted, "measure_s": 1.0, "speedup": 2.0, "speedup_ci": [1.9, 2.1],
        "latency_ms": {"p50": ms, "p90": 1.1 * ms, "p95": 1.15 * ms, "p99": 1.2 * ms, "mean": 1.05 * ms},
        "statistic_ms": ms, "cv": 0.03, "robust_cv": 0.02, "stable": True, "quality": accuracy,
        "metrics": {"accuracy": accuracy, "f1_macro": accuracy}, "params": 1000, "macs": 100_000, "size_mb": 0.1, "parity": {"passed": True},
    }
    return PASSES[kind].record(**{**line, **OWN_FIELDS[kind], **fields})
