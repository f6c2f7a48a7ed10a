import math

import numpy as np
import pytest

from spiralprune.deploy.stats import PERCENTILES, median_ci, median_ci_rel, summarize


def test_summarize_matches_numpy():
    x = np.random.default_rng(1).lognormal(0.0, 0.3, 501)
    s = summarize(x.tolist())
    for q in PERCENTILES:
        assert s[f"p{q}"] == pytest.approx(np.percentile(x, q))
    assert s["mean"] == pytest.approx(x.mean())
    assert s["stdev"] == pytest.approx(x.std(ddof=1))
    assert s["cv"] == pytest.approx(x.std(ddof=1) / x.mean())
    assert (s["min"], s["max"]) == (x.min(), x.max())
    assert s["p50"] <= s["p90"] <= s["p95"] <= s["p99"]


def test_summarize_single_sample_has_zero_spread():
    assert summarize([2.0]) == {
        "p50": 2.0, "p90": 2.0, "p95": 2.0, "p99": 2.0, "mean": 2.0, "stdev": 0.0, "cv": 0.0, "min": 2.0, "max": 2.0
    }


def test_summarize_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


def test_median_ci_covers_the_true_median_about_95_percent():
    rng = np.random.default_rng(0)
    true_median = math.exp(0.0)  # lognormal(0, s) has median 1
    trials = 2000
    hits = 0
    for _ in range(trials):
        lo, hi = median_ci(rng.lognormal(0.0, 0.5, 60))
        hits += lo <= true_median <= hi
    assert 0.93 <= hits / trials <= 0.985


def test_median_ci_brackets_the_sample_median_and_narrows_with_n():
    rng = np.random.default_rng(2)
    small, large = rng.normal(10, 1, 30), rng.normal(10, 1, 3000)
    for x in (small, large):
        lo, hi = median_ci(x)
        assert lo <= np.median(x) <= hi
    assert median_ci_rel(large) < median_ci_rel(small) / 4


def test_median_ci_of_a_sample_too_small_for_its_confidence_is_unbounded():
    """The range of n samples covers the median with probability 1 - 2 / 2**n: 94 % for five, 97 % for six."""
    assert median_ci([3.0, 1.0, 2.0]) == (-math.inf, math.inf)
    assert median_ci([5.0, 1.0, 4.0, 2.0, 3.0]) == (-math.inf, math.inf)
    assert median_ci([6.0, 1.0, 5.0, 2.0, 4.0, 3.0]) == (1.0, 6.0)
    assert median_ci(np.arange(1.0, 8.0), z=2.5758293035489004) == (-math.inf, math.inf)  # 99 %: 1 - 2/128 < 0.99
    assert median_ci(np.arange(1.0, 9.0), z=2.5758293035489004) == (1.0, 8.0)


@pytest.mark.parametrize("n", [6, 7, 10, 15, 40])
def test_median_ci_of_small_samples_covers_at_least_its_confidence(n):
    rng = np.random.default_rng(n)
    trials = 4000
    hits = sum(lo <= 1.0 <= hi for lo, hi in (median_ci(rng.lognormal(0.0, 0.5, n)) for _ in range(trials)))
    assert hits / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)
