"""Latency regression detection: a regression question judged by ``spiralprune.deploy.verdict`` on two models
measured paired, or on two profiles from separate runs, and the trend of a history of releases."""

from spiralprune.pipeline.compare.history import History, build_history
from spiralprune.pipeline.compare.profiles import (
    BETWEEN_RUN_TOLERANCE,
    BatchComparison,
    ProfileComparison,
    RegressionRule,
    compare_runs,
    judge_runs,
    paired_comparison,
)
from spiralprune.pipeline.compare.releases import Release, load_history, load_release

__all__ = [
    "BETWEEN_RUN_TOLERANCE", "BatchComparison", "History", "ProfileComparison", "RegressionRule", "Release",
    "build_history", "compare_runs", "judge_runs", "load_history", "load_release", "paired_comparison",
]
