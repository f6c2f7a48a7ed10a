"""The release gate: a budget (``budget``), the checks against it (``checks``) and their reports (``report``)."""

from pipeline.gate.budget import (
    AccuracyBudget,
    GateBudget,
    LatencyBudget,
    ParityBudget,
    SizeBudget,
    load_budget,
    parse_budget,
)
from pipeline.gate.checks import CheckResult, GateResult, run_gate

__all__ = [
    "AccuracyBudget", "CheckResult", "GateBudget", "GateResult", "LatencyBudget", "ParityBudget", "SizeBudget",
    "load_budget", "parse_budget", "run_gate",
]
