"""Latency regression detection: two profiles compared with a bootstrap CI and a Mann–Whitney U test,
and the trend of a history of releases."""

from pipeline.compare.history import History, build_history
from pipeline.compare.profiles import ProfileComparison, compare_profiles
from pipeline.compare.releases import Release, load_history, load_release
from pipeline.compare.stats import COMPARED_STATS, CompareSettings, SampleComparison, StatComparison, compare_samples

__all__ = [
    "COMPARED_STATS", "CompareSettings", "History", "ProfileComparison", "Release", "SampleComparison",
    "StatComparison", "build_history", "compare_profiles", "compare_samples", "load_history", "load_release",
]
