import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.verdict import Question, Verdict, decide, interval, judge, round_statistic, widened


def test_decide_compares_the_interval_not_the_estimate():
    assert decide(0.8, 0.95, 1.0) == "meets"
    assert decide(1.01, 1.2, 1.0) == "misses"
    assert decide(0.9, 1.1, 1.0) == "undecided"
    assert decide(0.9, 1.0, 1.0) == "meets"  # at the limit is within it


def test_a_model_far_under_an_absolute_budget_meets_it_however_noisy():
    rng = np.random.default_rng(0)
    values = 0.3 * rng.lognormal(0, 1.5, size=30)  # cv far above any stability threshold
    v = judge(Question("latency", "model", 100_000.0), values, 0.95)
    assert v.outcome == "meets"


def test_the_interval_of_the_median_ignores_rare_huge_outliers():
    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 0.01, size=60)
    values[::20] *= 10
    estimate, low, high = interval(values, 0.95)
    assert 0.98 < low <= estimate <= high < 1.02


def test_rounds_too_few_for_the_confidence_decide_nothing_however_far_from_the_limit():
    """A busy runner set aside all but one round (2026-12-07: "meets" at 97 % from one round): the range of
    a few rounds is no interval at that confidence, so the verdict is undecided and says why."""
    question = Question("step budget", "candidate", 0.75, reference="current")
    one = judge(question, [0.68], 0.97, set_aside=9)
    assert one.outcome == "undecided"
    assert "too few rounds (1) for a 97% interval" in one.message() and "9 rounds set aside" in one.message()
    assert judge(question, [0.5] * 5, 0.95).outcome == "undecided"  # five rounds: their range is a 94 % interval
    assert judge(question, [0.5] * 6, 0.95).outcome == "meets"


def test_undecided_message_says_how_far_apart_and_what_would_settle_it():
    v = judge(Question("step budget", "candidate", 1.0, reference="current"), [0.9, 1.1, 0.95, 1.05, 1.0, 1.02], 0.95)
    assert v.outcome == "undecided"
    assert "straddles the limit" in v.message() and "more rounds" in v.message()
    assert Verdict.from_dict(v.to_dict()) == v


def test_widening_for_evidence_from_separate_runs_can_only_make_a_verdict_less_certain():
    v = judge(Question("regression", "new", 1.05, reference="base"), np.full(30, 1.02), 0.95)
    assert v.outcome == "meets"
    assert widened(v, 0.10).outcome == "undecided"
    far = judge(Question("regression", "new", 1.05, reference="base"), np.full(30, 1.5), 0.95)
    assert widened(far, 0.10).outcome == "misses"


@pytest.mark.parametrize("statistic, expected", [("p50", 3.0), ("mean", 22.0 / 5), ("p90", 8.8)])
def test_round_statistic(statistic, expected):
    assert round_statistic([1.0, 2.0, 3.0, 4.0, 12.0], statistic) == pytest.approx(expected)


def test_bad_questions_are_refused():
    with pytest.raises(InputError):
        Question("q", "a", 0.0)
    with pytest.raises(InputError):
        Question("q", "a", 1.0, statistic="p42")


def test_two_separate_runs_decide_only_changes_beyond_what_moves_between_runs():
    from spiralprune.deploy.verdict import judge_runs

    rng = np.random.default_rng(2)
    base = rng.normal(1.0, 0.01, size=40)
    question = Question("regression", "new", 1.05, reference="base")
    same = judge_runs(question, rng.normal(1.0, 0.01, size=40), base, 0.95, 0.10)
    assert same.outcome == "undecided"
    assert judge_runs(question, rng.normal(1.4, 0.01, size=40), base, 0.95, 0.10).outcome == "misses"
    assert judge_runs(question, rng.normal(0.8, 0.01, size=40), base, 0.95, 0.10).outcome == "meets"
    assert judge_runs(question, rng.normal(1.0, 0.01, size=40), base, 0.95, 0.0).outcome == "meets"
