"""The regression question on two profiles from separate runs, on synthetic latencies of known distributions."""

import numpy as np
import pytest
from pydantic import ValidationError

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import LatencyBudget
from spiralprune.deploy.sampling import ProfileSettings, sample_rounds
from spiralprune.deploy.verdict import Question
from spiralprune.pipeline.compare.profiles import (
    REGRESSION_BUDGET, compare_runs, judge_runs, paired_comparison, regression_budget, regression_question,
)
from spiralprune.pipeline.gate.budget import parse_budget
from spiralprune.pipeline.gate.checks import latency_questions
from tests.deploy.synthetic import Machine
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples


def runs(factor: float, seed: int = 0, cv: float = 0.03, **kwargs):
    base = profile_from_samples(latencies(seed=2 * seed, cv=cv))
    new = profile_from_samples(factor * latencies(seed=2 * seed + 1, cv=cv))
    return compare_runs(base, new, **kwargs)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("machine_drift", [0.93, 1.0, 1.07])
def test_the_same_model_in_two_runs_is_never_a_regression_whatever_moved_between_them(seed, machine_drift):
    """Measured here: two back-to-back runs of one model differ by up to ±7 %; the tolerance covers it."""
    c = runs(machine_drift, seed)
    assert c.verdict in ("no regression", "inconclusive") and c.kind == "runs"


@pytest.mark.parametrize("seed", range(6))
def test_a_slowdown_beyond_the_between_run_tolerance_is_a_regression(seed):
    c = runs(1.30, seed)
    assert c.verdict == "regression" and c.exit_code == 1
    assert c.batches[1].change_pct == pytest.approx(30, abs=3)
    check = c.batches[1].check  # the gate's regression check, in percent
    assert (check.status, check.measured, check.unit) == ("fail", c.batches[1].change_pct, "%")
    assert check.limit == pytest.approx(5.0)


def test_a_speedup_beyond_tolerance_and_minimum_effect_is_an_improvement():
    c = runs(0.70)
    assert c.verdict == "improvement" and c.exit_code == 0
    assert c.batches[1].verdict.outcome == "meets"


def test_a_change_within_the_tolerance_is_inconclusive_and_says_so():
    c = runs(1.10)
    b = c.batches[1]
    assert c.verdict == "inconclusive" and c.exit_code == 4
    assert b.verdict.outcome == "undecided" and b.verdict.low < 1.05 < b.verdict.high
    # Without the between-run tolerance the same data would have been called a regression.
    assert runs(1.10, budget=LatencyBudget(max_regression_pct=5, between_run_tolerance=0.0)).verdict == "regression"


def test_the_regression_question_is_the_gates_on_the_same_budget():
    latency = {"statistic": "p90", "max_regression_pct": 7}
    [gates] = latency_questions(parse_budget({"latency": latency}), baseline_measured=True, batch=1)
    ours = regression_question(LatencyBudget(**latency), 1)
    assert (ours.name, ours.subject, ours.reference) == ("regression", "new", "base")  # as compare's reports name it
    assert (ours.limit, ours.statistic) == (gates.limit, gates.statistic) == (1.07, "p90")


def test_the_interval_is_widened_by_the_tolerance_on_both_sides():
    question = Question("regression", "new", 1.05, reference="base")
    rng = np.random.default_rng(0)
    base, new = rng.normal(2.0, 0.01, 40), rng.normal(2.0, 0.01, 40)
    tight = judge_runs(question, list(new), list(base), 0.95, 0.0)
    wide = judge_runs(question, list(new), list(base), 0.95, 0.10)
    assert wide.low == pytest.approx(0.9 * tight.low) and wide.high == pytest.approx(1.1 * tight.high)
    assert tight.outcome == "meets" and wide.outcome == "undecided"


def test_rare_huge_outliers_do_not_make_a_regression():
    base = latencies(seed=1)
    new = latencies(seed=2)
    new[::50] *= 10
    c = compare_runs(profile_from_samples(base), profile_from_samples(new))
    assert c.verdict != "regression"


def test_every_shared_batch_is_judged_and_the_worst_decides():
    base = profile_from_samples(latencies(seed=1), latencies(4.0, seed=2))
    new = profile_from_samples(latencies(seed=3), 1.4 * latencies(4.0, seed=4))
    c = compare_runs(base, new)
    assert set(c.batches) == {1, 2}
    assert c.batches[1].call != "regression" and c.batches[2].call == "regression"
    assert c.verdict == "regression" and c.to_dict()["batches"]["2"]["call"] == "regression"
    only_batch_1 = compare_runs(base, new, batches=[1])
    assert set(only_batch_1.batches) == {1}


def test_a_tail_statistic_can_decide():
    c = runs(1.0, budget=LatencyBudget(statistic="p90", max_regression_pct=5))
    assert c.to_dict()["statistic"] == "p90" and c.batches[1].verdict.question.statistic == "p90"


def test_profiles_from_different_targets_are_refused():
    base = profile_from_samples(latencies(seed=1))
    with pytest.raises(InputError, match="another target .*cpu 'test CPU' vs 'other'.*paired"):
        compare_runs(base, profile_from_samples(latencies(seed=2), cpu="other"))


def test_a_profile_without_rounds_is_refused():
    base, new = profile_from_samples(latencies(seed=1)), profile_from_samples(latencies(seed=2))
    new.measurements[0].round_sizes = []
    with pytest.raises(InputError, match="records no rounds"):
        compare_runs(base, new)


def test_profiles_without_a_shared_batch_are_input_errors():
    one, two = profile_from_samples(latencies(seed=1)), profile_from_samples(latencies(seed=2), start_batch=8)
    with pytest.raises(InputError, match="share no batch size"):
        compare_runs(one, two)
    with pytest.raises(InputError, match="batch 4"):
        compare_runs(one, one, batches=[4])


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"statistic": "p42", "max_regression_pct": 5}, "budget: statistic: Input should be 'p50'"),
        ({"max_regression_pct": 5, "between_run_tolerance": -0.1}, "budget: between_run_tolerance: Input should be"),
        ({"max_regression_pct": -1}, "budget: max_regression_pct: Input should be greater than or equal to 0"),
        ({"max_regression_pct": 100}, r"must be a percentage in \[0, 100\), got 100"),
        ({"max_regression_pct": 5, "max_ms": 2.0}, "latency.max_ms: a comparison judges max_regression_pct"),
        ({"min_speedup": 2.0}, "latency.min_speedup: a comparison judges max_regression_pct"),
    ],
)
def test_a_budget_a_comparison_cannot_judge_is_an_input_error(keys, message):
    with pytest.raises(InputError, match=message):
        regression_budget(keys)
    try:
        budget = LatencyBudget(**keys)
    except ValidationError:
        return  # not a latency budget at all
    with pytest.raises(InputError, match=message):  # a latency budget that is not a comparison's, given from Python
        compare_runs(profile_from_samples(latencies(seed=1)), profile_from_samples(latencies(seed=2)), budget)


@pytest.mark.parametrize(("factor", "call"), [(1.0, "no regression"), (1.15, "regression"), (0.8, "improvement")])
def test_a_paired_verdict_is_not_widened(factor, call):
    """Rounds on a simulated busy machine: the per-round ratios cancel what the machine does."""
    m = Machine(1, cv=0.05, drift=0.3, step=1.0)
    settings = ProfileSettings(warmup_s=0.05, block_s=0.02, min_rounds=10, min_duration_s=0.2, max_duration_s=6.0)
    question = regression_question(REGRESSION_BUDGET, 1)
    rounds = sample_rounds({"base": m.model(1.0), "new": m.model(factor)}, settings, [question], clock=m.clock, cpu=m.cpu)
    base = profile_from_samples(rounds.series["base"].samples_ms)
    new = profile_from_samples(rounds.series["new"].samples_ms)
    c = paired_comparison(base, new, {1: rounds.verdict("regression")}, REGRESSION_BUDGET, settings)
    assert c.kind == "paired" and c.kind_label == "paired in this job" and c.verdict == call
    assert c.to_dict()["tolerance"] == 0.0
