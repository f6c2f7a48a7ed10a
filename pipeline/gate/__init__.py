"""The release gate: a budget (``budget``), the checks against it (``checks``) and their reports (``report``)."""

from spiral.pipeline.gate.budget import GateBudget, load_budget, parse_budget
from spiral.pipeline.gate.checks import GateResult, run_gate

__all__ = ["GateBudget", "GateResult", "load_budget", "parse_budget", "run_gate"]
