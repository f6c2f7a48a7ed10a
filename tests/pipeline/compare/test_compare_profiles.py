import pytest

from deploy.errors import InputError
from pipeline.compare.profiles import compare_profiles
from pipeline.compare.stats import CompareSettings
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples


def test_every_shared_batch_is_compared_and_the_chosen_statistic_decides():
    base = profile_from_samples(latencies(seed=1), latencies(4.0, seed=2))
    new = profile_from_samples(latencies(seed=3), 1.2 * latencies(4.0, seed=4))
    c = compare_profiles(base, new)
    assert set(c.batches) == {1, 2}
    assert c.deciding()[1].verdict == "no change" and c.deciding()[2].verdict == "regression"
    assert c.verdict == "regression" and c.exit_code == 1
    only_batch_1 = compare_profiles(base, new, batch=1)
    assert set(only_batch_1.batches) == {1} and only_batch_1.verdict == "no change" and only_batch_1.exit_code == 0
    assert c.to_dict()["batches"]["2"]["stats"][0]["verdict"] == "regression"


def test_an_improvement_exits_0_and_an_unstable_profile_exits_1():
    base = profile_from_samples(latencies(seed=1))
    assert compare_profiles(base, profile_from_samples(0.8 * latencies(seed=2))).verdict == "improvement"
    unstable = compare_profiles(base, profile_from_samples(latencies(cv=0.3, seed=2)))
    assert unstable.verdict == "inconclusive" and unstable.exit_code == 1


def test_a_tail_statistic_can_decide():
    base = profile_from_samples(latencies(seed=1))
    c = compare_profiles(base, profile_from_samples(latencies(seed=2)), CompareSettings(), statistic="p99")
    assert c.statistic == "p99" and c.deciding()[1].statistic == "p99"


def test_profiles_from_different_machines_carry_a_warning():
    c = compare_profiles(profile_from_samples(latencies(seed=1)), profile_from_samples(latencies(seed=2), cpu="other"))
    assert any("different cpu" in w for w in c.warnings)


def test_profiles_without_a_shared_batch_or_with_an_unknown_statistic_are_input_errors():
    one, two = profile_from_samples(latencies(seed=1)), profile_from_samples(latencies(seed=2), start_batch=8)
    with pytest.raises(InputError, match="share no batch size"):
        compare_profiles(one, two)
    with pytest.raises(InputError, match="batch 4"):
        compare_profiles(one, one, batch=4)
    with pytest.raises(InputError, match="unknown statistic 'p42'"):
        compare_profiles(one, one, statistic="p42")
