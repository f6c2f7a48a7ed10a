"""Latency regression detection: a latency budget's ``max_regression_pct`` judged by ``spiralprune.deploy.verdict``
on two models measured paired, or on two profiles from separate runs, and the trend of a history of releases."""

from spiralprune.pipeline.compare.history import History, build_history
from spiralprune.pipeline.compare.profiles import (
    REGRESSION_BUDGET,
    BatchComparison,
    ProfileComparison,
    compare_runs,
    judge_runs,
    paired_comparison,
    regression_budget,
    regression_question,
)
from spiralprune.pipeline.compare.releases import Release, load_history, load_release

__all__ = [
    "REGRESSION_BUDGET", "BatchComparison", "History", "ProfileComparison", "Release", "build_history",
    "compare_runs", "judge_runs", "load_history", "load_release", "paired_comparison", "regression_budget",
    "regression_question",
]
