"""The release gate: a budget (``budget``), the checks against it (``checks``) and their reports (``report``)."""

from pipeline.gate.budget import GateBudget, LatencyBudget, SizeBudget, load_budget, parse_budget
from pipeline.gate.checks import CheckResult, GateResult, run_gate

__all__ = [
    "CheckResult", "GateBudget", "GateResult", "LatencyBudget", "SizeBudget",
    "load_budget", "parse_budget", "run_gate",
]
