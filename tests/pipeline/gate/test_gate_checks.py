import pytest

from deploy.errors import InputError
from pipeline.export import ParityResult
from pipeline.gate.budget import GateBudget
from pipeline.gate.checks import run_gate
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples

STABLE = profile_from_samples(latencies(2.0, seed=1))
UNSTABLE = profile_from_samples(latencies(2.0, cv=0.4, seed=1))
PARITY_OK = ParityResult(max_abs_diff=2e-5, top1_agreement=1.0, samples=64, atol=1e-3, min_top1_agreement=0.99)


def budget(**sections) -> GateBudget:
    return GateBudget.model_validate(sections)


def by_name(result):
    return {c.name: c for c in result.checks}


def test_a_release_within_every_budget_passes_with_positive_margins():
    result = run_gate(
        budget(latency={"max_ms": 2.5, "max_regression_pct": 5}, accuracy={"min": 90, "max_drop": 1},
               size={"max_mb": 10, "max_params": 10_000}, parity={"atol": 1e-4}),
        profile=STABLE, baseline=profile_from_samples(latencies(2.0, seed=2)), metrics={"accuracy": 0.95},
        baseline_metrics={"accuracy": 0.955}, model_size_mb=1.5, params=5000, parity=PARITY_OK,
    )
    assert result.passed and result.exit_code == 0 and not result.problems
    checks = by_name(result)
    assert list(checks) == [
        "latency.p50.max_ms", "latency.p50.regression", "accuracy.min", "accuracy.max_drop", "size.mb",
        "size.params", "parity.max_abs_diff", "parity.top1_agreement", "stability.cv",
    ]
    assert all(c.margin >= 0 for c in result.checks if c.name != "latency.p50.regression")
    assert checks["latency.p50.max_ms"].margin == pytest.approx(2.5 - STABLE.stat("p50"))
    assert checks["accuracy.min"].measured == pytest.approx(95.0) and checks["accuracy.min"].margin == pytest.approx(5.0)
    assert checks["accuracy.max_drop"].measured == pytest.approx(0.5)
    assert checks["parity.max_abs_diff"].budget == 1e-4
    assert result.to_dict()["passed"] is True and result.to_dict()["comparison"]["verdict"] == "no change"


@pytest.mark.parametrize(
    ("sections", "kwargs", "failing", "measured", "limit", "margin"),
    [
        ({"latency": {"max_ms": 1.5}}, {}, "latency.p50.max_ms", None, 1.5, None),
        ({"accuracy": {"min": 96}}, {"metrics": {"accuracy": 0.95}}, "accuracy.min", 95.0, 96.0, -1.0),
        ({"accuracy": {"max_drop": 0.5}}, {"metrics": {"accuracy": 0.95}, "baseline_metrics": {"accuracy": 0.96}},
         "accuracy.max_drop", 1.0, 0.5, -0.5),
        ({"size": {"max_mb": 1}}, {"model_size_mb": 1.25}, "size.mb", 1.25, 1.0, -0.25),
        ({"size": {"max_params": 100}}, {"params": 150}, "size.params", 150, 100, -50),
        ({"parity": {"atol": 1e-6}}, {"parity": PARITY_OK}, "parity.max_abs_diff", 2e-5, 1e-6, 1e-6 - 2e-5),
        ({"parity": {"min_top1_agreement": 1.0}}, {"parity": ParityResult(0.0, 0.95, 64, 1e-3, 0.9)},
         "parity.top1_agreement", 95.0, 100.0, -5.0),
    ],
)
def test_each_failing_check_names_measured_budget_and_margin(sections, kwargs, failing, measured, limit, margin):
    result = run_gate(budget(**sections), profile=STABLE, **kwargs)
    assert not result.passed and result.exit_code == 1
    (check,) = result.problems
    assert check.name == failing and check.status == "fail"
    assert check.budget == pytest.approx(limit)
    if measured is not None:
        assert check.measured == pytest.approx(measured) and check.margin == pytest.approx(margin)
    assert check.margin < 0
    line = check.line()
    assert line.startswith(f"FAIL {failing}: measured ") and ", budget " in line and ", margin -" in line


def test_a_10_percent_regression_fails_and_noise_does_not():
    base = profile_from_samples(latencies(2.0, seed=1))
    gate = budget(latency={"max_regression_pct": 5})
    slower = run_gate(gate, profile=profile_from_samples(1.10 * latencies(2.0, seed=2)), baseline=base)
    (check,) = slower.problems
    assert check.name == "latency.p50.regression" and check.status == "fail"
    assert check.measured == pytest.approx(10, abs=2) and check.unit == "%" and check.margin < 0
    assert "significant regression" in check.message and slower.comparison.verdict == "regression"
    same = run_gate(gate, profile=profile_from_samples(latencies(2.0, seed=3)), baseline=base)
    assert same.passed


def test_the_allowed_regression_raises_the_threshold_above_the_minimum_effect():
    base = profile_from_samples(latencies(2.0, seed=1))
    new = profile_from_samples(1.10 * latencies(2.0, seed=2))
    assert run_gate(budget(latency={"max_regression_pct": 20}), profile=new, baseline=base).passed


def test_an_unstable_measurement_makes_latency_inconclusive_never_a_pass():
    result = run_gate(budget(latency={"max_ms": 100.0}), profile=UNSTABLE)
    checks = by_name(result)
    assert checks["latency.p50.max_ms"].status == "inconclusive"
    assert checks["stability.cv"].status == "fail" and "unstable" in checks["stability.cv"].message
    assert not result.passed and result.exit_code == 1


def test_an_unstable_baseline_makes_the_regression_check_inconclusive():
    result = run_gate(budget(latency={"max_regression_pct": 5}), profile=STABLE, baseline=UNSTABLE)
    checks = by_name(result)
    assert checks["latency.p50.regression"].status == "inconclusive" and checks["stability.cv"].status == "pass"
    assert "baseline" in checks["latency.p50.regression"].message and result.exit_code == 1


def test_the_stability_budget_decides_what_is_stable():
    lenient = budget(latency={"max_ms": 100.0}, stability={"max_cv": 0.9})
    assert run_gate(lenient, profile=UNSTABLE).passed


def test_without_a_parity_budget_the_parity_result_is_judged_by_its_own_thresholds():
    failing = ParityResult(max_abs_diff=0.5, top1_agreement=0.5, samples=64, atol=1e-3, min_top1_agreement=0.99)
    result = run_gate(budget(size={"max_mb": 10}), profile=STABLE, model_size_mb=1, parity=failing)
    assert [c.name for c in result.problems] == ["parity.max_abs_diff", "parity.top1_agreement"]


@pytest.mark.parametrize(
    ("sections", "kwargs", "match"),
    [
        ({"latency": {"max_regression_pct": 5}}, {}, "pass --baseline"),
        ({"accuracy": {"min": 90}}, {}, "pass --data"),
        ({"accuracy": {"max_drop": 1}}, {"metrics": {"accuracy": 0.9}}, "baseline records no accuracy"),
        ({"size": {"max_mb": 1}}, {}, "size was not measured"),
        ({"parity": {"atol": 1e-3}}, {}, "no source model"),
    ],
)
def test_a_check_without_what_it_needs_is_an_input_error(sections, kwargs, match):
    with pytest.raises(InputError, match=match):
        run_gate(budget(**sections), profile=STABLE, **kwargs)
