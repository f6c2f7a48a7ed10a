import numpy as np
import pytest

from deploy.errors import InputError
from pipeline.compare.stats import COMPARED_STATS, CompareSettings, compare_samples
from tests.pipeline.compare.synthetic_profiles import latencies


@pytest.mark.parametrize("seed", range(10))
def test_a_a_samples_from_one_distribution_are_never_a_regression(seed):
    c = compare_samples(latencies(seed=2 * seed), latencies(seed=2 * seed + 1))
    assert {s.statistic for s in c.stats} == set(COMPARED_STATS)
    assert all(s.verdict == "no change" for s in c.stats), [(s.statistic, s.verdict) for s in c.stats]


@pytest.mark.parametrize("seed", range(5))
def test_a_10_percent_slowdown_is_a_regression(seed):
    c = compare_samples(latencies(seed=seed), 1.10 * latencies(seed=seed + 100))
    p50 = c.stat("p50")
    assert p50.verdict == "regression" and c.p_value < 0.01
    assert p50.ci_low <= 1.10 <= p50.ci_high
    assert p50.change_pct == pytest.approx(10, abs=2)
    assert c.stat("mean").verdict == "regression"


def test_a_15_percent_speedup_is_an_improvement():
    c = compare_samples(latencies(seed=1), 0.85 * latencies(seed=2))
    assert c.stat("p50").verdict == "improvement"


def test_a_significant_change_below_the_minimum_effect_is_no_change():
    c = compare_samples(latencies(n=2000, seed=1), 1.02 * latencies(n=2000, seed=2))
    assert c.p_value < 1e-6  # the U test alone would flag 2 %
    assert c.stat("p50").verdict == "no change"
    # ...and a smaller minimum effect turns the same data into a regression.
    assert compare_samples(latencies(n=2000, seed=1), 1.02 * latencies(n=2000, seed=2),
                           CompareSettings(min_effect_pct=1.0)).stat("p50").verdict == "regression"


def test_an_effect_whose_interval_reaches_below_the_minimum_is_not_a_regression():
    """Few noisy samples: a 7 % point estimate whose CI reaches below +5 % is not enough."""
    c = compare_samples(latencies(n=40, cv=0.06, seed=3), 1.07 * latencies(n=40, cv=0.06, seed=4))
    p50 = c.stat("p50")
    assert p50.ci_low < 1.05 and p50.verdict == "no change"


@pytest.mark.parametrize("which", ["base", "new"])
def test_an_unstable_measurement_is_inconclusive_even_for_a_large_slowdown(which):
    noisy = latencies(cv=0.4, seed=5)
    calm = latencies(seed=6)
    base, new = (noisy, 1.5 * calm) if which == "base" else (calm, 1.5 * noisy)
    c = compare_samples(base, new)
    assert all(s.verdict == "inconclusive" for s in c.stats)
    noisy_name, calm_name = ("baseline", "new") if which == "base" else ("new", "baseline")
    assert c.note.startswith("inconclusive: unstable measurement (") and f"{noisy_name} robust cv" in c.note
    assert f"{calm_name} robust cv" not in c.note


def test_bad_samples_and_settings_are_input_errors():
    with pytest.raises(InputError, match="at least 2"):
        compare_samples([1.0], [1.0, 2.0])
    with pytest.raises(InputError, match="non-positive"):
        compare_samples([1.0, 0.0], [1.0, 2.0])
    with pytest.raises(InputError, match="non-finite"):
        compare_samples([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(InputError, match="alpha"):
        CompareSettings(alpha=1.5)
    with pytest.raises(InputError, match="minimum effect"):
        CompareSettings(min_effect_pct=-1)
    with pytest.raises(InputError, match="max_cv"):
        CompareSettings(max_cv=0)


def test_the_bootstrap_is_seeded_and_handles_large_profiles():
    base, new = latencies(n=50_000, seed=7), latencies(n=50_000, seed=8)
    first = compare_samples(base, new, CompareSettings(resamples=200))
    assert first == compare_samples(base, new, CompareSettings(resamples=200))
    assert first.stat("p50").ci_high - first.stat("p50").ci_low < 0.01


def test_a_few_delayed_samples_do_not_make_a_slowdown_inconclusive():
    """2 % of the samples delayed 10x by another process: the plain cv is far above 0.10, the median is not moved."""
    base, new = latencies(seed=11), 1.10 * latencies(seed=12)
    new[::50] *= 10
    assert np.std(new) / np.mean(new) > 0.10
    c = compare_samples(base, new)
    assert c.note == "" and c.new_cv < 0.10
    assert c.stat("p50").verdict == "regression"
