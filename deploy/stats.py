"""Latency statistics: percentiles, dispersion and the confidence interval of the median.

Numpy only, so the profiler runs on a bare target (a Jetson has no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
_Z95 = 1.959963984540054


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50 p90 p95 p99 mean stdev (sample, ddof=1) cv min max of latency samples in ms."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(x.mean())
    stdev = float(x.std(ddof=1)) if x.size > 1 else 0.0
    stats = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES))}
    stats.update(
        mean=mean,
        stdev=stdev,
        cv=stdev / mean if mean > 0 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
    )
    return stats


def median_ci(samples: Sequence[float], z: float = _Z95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median by order statistics, at the confidence ``z``
    stands for (two-sided, normal quantile: 1.96 is 95 %).

    The rank of the median among n samples is Binomial(n, 1/2); with the normal approximation the
    interval is [x_(l), x_(u)] with l = floor(n/2 - z*sqrt(n)/2) and u = ceil(1 + n/2 + z*sqrt(n)/2)
    (1-based ranks; a rank wider than the exact binomial one on each side, which the sequential looks of
    ``spiralprune.deploy.sampling`` were calibrated with: rounds of a busy machine are not independent).
    Where those ranks fall outside the sample, the sample's range is the interval only if it reaches the
    confidence itself (it covers the median with probability 1 - 2 / 2**n: six samples at 95 %, eight at
    99 %); a sample too small for that has no such interval, (-inf, inf), so that a judge reading it stays
    undecided (2026-12-07: a busy runner set aside all rounds but one, and that one round's "interval"
    had been judged to meet at 97 %).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("no samples")
    half = z * math.sqrt(n) / 2
    lo, hi = math.floor(n / 2 - half), math.ceil(1 + n / 2 + half)
    if lo < 1 or hi > n:
        if 1.0 - 2.0 * 0.5**n < math.erf(z / math.sqrt(2.0)):
            return -math.inf, math.inf
        lo, hi = max(1, lo), min(n, hi)
    return float(x[lo - 1]), float(x[hi - 1])


def median_ci_rel(samples: Sequence[float]) -> float:
    """Largest distance from the median to an end of its 95 % CI, relative to the median."""
    median = float(np.median(samples))
    lo, hi = median_ci(samples)
    if median <= 0:
        return math.inf
    return max(median - lo, hi - median) / median


# MAD x 1.4826 estimates the standard deviation of normally distributed samples.
_MAD_TO_SD = 1.482602218505602


def robust_cv(samples_ms: Sequence[float]) -> float:
    """Median absolute deviation scaled to a standard deviation, relative to the median.

    A handful of samples delayed by another process inflate the plain standard deviation without
    moving the median; this one moves only when the measurement is noisy throughout.
    """
    x = np.asarray(samples_ms, dtype=np.float64)
    median = float(np.median(x))
    return _MAD_TO_SD * float(np.median(np.abs(x - median))) / median if median > 0 else math.inf
