"""Is the new latency really different? Bootstrap CI of each statistic's ratio plus a Mann–Whitney U test.

A change is called a regression (or an improvement) only when both hold:

- it is significant: the two-sided Mann–Whitney U test on the raw samples gives p < ``alpha``;
- it is larger than the minimum effect: the whole ``1 - alpha`` bootstrap confidence interval of
  ``statistic(new) / statistic(base)`` lies beyond ``1 ± min_effect_pct / 100``.

Requiring the interval, not only the point estimate, past the minimum effect is what keeps two
runs of the same model from failing a gate: with hundreds of samples the U test alone finds
"significant" differences of a fraction of a percent, and a tail statistic such as p99 moves
by more than 5 % between runs on a busy machine. A measurement whose robust coefficient of
variation (``robust_cv``: the median absolute deviation scaled to a standard deviation, over the
median) exceeds ``max_cv`` makes the comparison inconclusive: never a pass. The robust form is
used because a handful of samples delayed by another process inflate the plain standard deviation
without moving the median or the rank test; a measurement that is noisy throughout still fails.

Every statistic gets a verdict, but one statistic decides (p50 unless told otherwise): the tails
of two runs of the same model differ by more than any useful minimum effect on a shared machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from deploy.errors import InputError

COMPARED_STATS = ("p50", "p90", "p95", "p99", "mean")
Verdict = Literal["regression", "improvement", "no change", "inconclusive"]

# Enough resamples for a stable 99 % interval; chunked so a profile of 100k samples stays in memory.
BOOTSTRAP_RESAMPLES = 1000
_CHUNK_ELEMENTS = 4_000_000
# MAD x 1.4826 estimates the standard deviation of normally distributed samples.
_MAD_TO_SD = 1.482602218505602


def robust_cv(samples_ms: np.ndarray) -> float:
    """Median absolute deviation scaled to a standard deviation, relative to the median."""
    median = float(np.median(samples_ms))
    return _MAD_TO_SD * float(np.median(np.abs(samples_ms - median))) / median


@dataclass(frozen=True)
class CompareSettings:
    min_effect_pct: float = 5.0
    alpha: float = 0.01
    max_cv: float = 0.10
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_effect_pct) or self.min_effect_pct < 0:
            raise InputError(f"the minimum effect must be a percentage >= 0, got {self.min_effect_pct}")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not np.isfinite(self.max_cv) or self.max_cv <= 0:
            raise InputError(f"max_cv must be a positive number, got {self.max_cv}")
        if self.resamples < 100:
            raise InputError(f"use at least 100 bootstrap resamples, got {self.resamples}")


@dataclass(frozen=True)
class StatComparison:
    """One statistic of one batch size, compared."""

    statistic: str
    base_ms: float
    new_ms: float
    ratio: float
    ci_low: float
    ci_high: float
    verdict: Verdict

    @property
    def change_pct(self) -> float:
        return 100 * (self.ratio - 1)

    def to_dict(self) -> dict:
        return asdict(self) | {"change_pct": self.change_pct}


@dataclass(frozen=True)
class SampleComparison:
    """Every compared statistic of two sets of latency samples, with the shared U test."""

    base_n: int
    new_n: int
    base_cv: float
    new_cv: float
    p_value: float
    stats: tuple[StatComparison, ...]
    note: str

    def stat(self, name: str) -> StatComparison:
        for s in self.stats:
            if s.statistic == name:
                return s
        raise InputError(f"statistic '{name}' was not compared; compared: {', '.join(COMPARED_STATS)}")

    def to_dict(self) -> dict:
        return {
            "base_n": self.base_n,
            "new_n": self.new_n,
            "base_cv": self.base_cv,
            "new_cv": self.new_cv,
            "p_value": self.p_value,
            "note": self.note,
            "stats": [s.to_dict() for s in self.stats],
        }


def statistics(values: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named statistic (p50 … p99, mean) along the last axis; the percentiles in one pass."""
    unknown = [n for n in names if n not in COMPARED_STATS]
    if unknown:
        raise InputError(f"cannot compare statistic '{unknown[0]}'; known: {', '.join(COMPARED_STATS)}")
    percentiles = [n for n in names if n != "mean"]
    out = {}
    if percentiles:
        values_at = np.percentile(values, [float(n[1:]) for n in percentiles], axis=-1)
        out = dict(zip(percentiles, values_at))
    if "mean" in names:
        out["mean"] = values.mean(axis=-1)
    return out


def bootstrap_ratio_ci(
    base: np.ndarray, new: np.ndarray, names: Sequence[str], confidence: float, resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of ``statistic(new) / statistic(base)`` for each name."""
    rng = np.random.default_rng(seed)
    ratios: dict[str, list[np.ndarray]] = {name: [] for name in names}
    chunk = max(1, _CHUNK_ELEMENTS // max(base.size, new.size))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        b = statistics(base[rng.integers(0, base.size, size=(k, base.size))], names)
        n = statistics(new[rng.integers(0, new.size, size=(k, new.size))], names)
        for name in names:
            ratios[name].append(n[name] / b[name])
        done += k
    tail = 100 * (1 - confidence) / 2
    out = {}
    for name in names:
        low, high = np.percentile(np.concatenate(ratios[name]), [tail, 100 - tail])
        out[name] = (float(low), float(high))
    return out


def compare_samples(
    base_ms: Sequence[float], new_ms: Sequence[float], settings: CompareSettings = CompareSettings(),
    names: Sequence[str] = COMPARED_STATS,
) -> SampleComparison:
    """Each statistic of ``new`` against ``base`` with its verdict (see the module docstring)."""
    from scipy.stats import mannwhitneyu

    base = np.asarray(base_ms, dtype=np.float64)
    new = np.asarray(new_ms, dtype=np.float64)
    for label, x in (("baseline", base), ("new", new)):
        if x.size < 2:
            raise InputError(f"the {label} measurement has {x.size} latency samples; comparing needs at least 2")
        if not np.isfinite(x).all() or (x <= 0).any():
            raise InputError(f"the {label} measurement has non-finite or non-positive latency samples")
    p_value = float(mannwhitneyu(new, base, alternative="two-sided").pvalue)
    intervals = bootstrap_ratio_ci(base, new, names, 1 - settings.alpha, settings.resamples, settings.seed)
    base_cv, new_cv = robust_cv(base), robust_cv(new)
    unstable = [f"{label} robust cv {cv:.1%}" for label, cv in (("baseline", base_cv), ("new", new_cv)) if cv > settings.max_cv]
    note = f"inconclusive: unstable measurement ({', '.join(unstable)} > {settings.max_cv:.0%})" if unstable else ""
    stats = []
    effect = settings.min_effect_pct / 100
    base_values, new_values = statistics(base, names), statistics(new, names)
    for name in names:
        base_value, new_value = float(base_values[name]), float(new_values[name])
        low, high = intervals[name]
        if unstable:
            verdict: Verdict = "inconclusive"
        elif p_value < settings.alpha and low > 1 + effect:
            verdict = "regression"
        elif p_value < settings.alpha and high < 1 - effect:
            verdict = "improvement"
        else:
            verdict = "no change"
        stats.append(StatComparison(name, base_value, new_value, new_value / base_value, low, high, verdict))
    return SampleComparison(base.size, new.size, base_cv, new_cv, p_value, tuple(stats), note)
