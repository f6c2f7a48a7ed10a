"""The gate's checks on hand-made profiles of known latency distributions, and on paired sessions
of a simulated machine (``tests.deploy.synthetic``): nothing here depends on this machine's speed."""

import xml.etree.ElementTree as ET

import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import ParityBudget
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.sampling import ProfileSettings, sample_rounds
from spiralprune.pipeline.export import ParityResult
from spiralprune.pipeline.gate.budget import GateBudget
from spiralprune.pipeline.gate.checks import BASELINE, CANDIDATE, latency_questions, run_gate
from spiralprune.pipeline.gate.report import gate_junit
from tests.deploy.synthetic import Machine
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples, profile_from_series

STABLE = profile_from_samples(latencies(2.0, seed=1))
UNSTABLE = profile_from_samples(latencies(2.0, cv=0.4, seed=1))
PARITY_OK = ParityResult(max_abs_diff=2e-5, top1_agreement=1.0, samples=64, limits=ParityBudget(atol=1e-3, min_top1_agreement=0.99))
SETTINGS = ProfileSettings(warmup_s=0.05, block_s=0.02, min_rounds=10, min_duration_s=0.2, max_duration_s=6.0)


def budget(**sections) -> GateBudget:
    return GateBudget.model_validate(sections)


def by_name(result):
    return {c.name: c for c in result.checks}


def paired_gate(gate: GateBudget, base_ms: float, new_ms: float, seed: int = 0):
    """The candidate and the released model measured in rounds on a busy simulated machine, then gated."""
    m = Machine(seed, cv=0.08, drift=0.3, step=1.0, outlier_p=0.01)
    rounds = sample_rounds({CANDIDATE: m.model(new_ms), BASELINE: m.model(base_ms)}, SETTINGS,
                           latency_questions(gate, baseline_measured=True, batch=1), clock=m.clock, cpu=m.cpu)
    return run_gate(gate, profile=profile_from_series(rounds.series[CANDIDATE]),
                    baseline=profile_from_series(rounds.series[BASELINE]), paired=True,
                    verdicts={v.question.name: v for v in rounds.verdicts})


def test_a_release_within_every_budget_passes_with_positive_margins():
    result = run_gate(
        budget(latency={"max_ms": 2.5, "max_regression_pct": 20}, accuracy={"min": 90, "max_drop": 1},
               size={"max_mb": 10, "max_params": 10_000}, parity={"atol": 1e-4}),
        profile=STABLE, baseline=profile_from_samples(latencies(2.0, seed=2)), metrics={"accuracy": 0.95},
        baseline_metrics={"accuracy": 0.955}, file=ModelFile(1.5, 5000, 80_000), parity=PARITY_OK,
    )
    assert result.passed and result.exit_code == 0 and not result.problems
    checks = by_name(result)
    assert list(checks) == [
        "latency.p50.max_ms", "latency.p50.regression", "accuracy.min", "accuracy.max_drop", "size.mb",
        "size.params", "parity.max_abs_diff", "parity.top1_agreement",
    ]
    assert all(c.margin >= 0 for c in result.checks)
    latency = checks["latency.p50.max_ms"]
    assert latency.measured == pytest.approx(STABLE.stat("p50"), rel=0.01) and latency.margin < 2.5 - latency.measured
    assert latency.message.startswith("latency.p50.max_ms: meets")
    assert checks["latency.p50.regression"].message.startswith("stored baseline from another run: ")
    assert checks["accuracy.min"].measured == pytest.approx(95.0) and checks["accuracy.min"].margin == pytest.approx(5.0)
    assert checks["accuracy.max_drop"].measured == pytest.approx(0.5)
    assert checks["parity.max_abs_diff"].limit == 1e-4
    data = result.to_dict()
    assert data["passed"] is True and data["comparison"] == "stored baseline from another run"
    assert [v["outcome"] for v in data["latency_verdicts"]] == ["meets", "meets"]
    assert result.notes[0].startswith("candidate: p50 ") and "robust cv" in result.notes[0]


@pytest.mark.parametrize(
    ("sections", "kwargs", "failing", "measured", "limit", "margin"),
    [
        ({"latency": {"max_ms": 1.5}}, {}, "latency.p50.max_ms", None, 1.5, None),
        ({"accuracy": {"min": 96}}, {"metrics": {"accuracy": 0.95}}, "accuracy.min", 95.0, 96.0, -1.0),
        ({"accuracy": {"max_drop": 0.5}}, {"metrics": {"accuracy": 0.95}, "baseline_metrics": {"accuracy": 0.96}},
         "accuracy.max_drop", 1.0, 0.5, -0.5),
        ({"size": {"max_mb": 1}}, {"file": ModelFile(1.25, 150, 800)}, "size.mb", 1.25, 1.0, -0.25),
        ({"size": {"max_params": 100}}, {"file": ModelFile(1.25, 150, 800)}, "size.params", 150, 100, -50),
        ({"size": {"max_macs": 500}}, {"file": ModelFile(1.25, 150, 800)}, "size.macs", 800, 500, -300),
        ({"parity": {"atol": 1e-6}}, {"parity": PARITY_OK}, "parity.max_abs_diff", 2e-5, 1e-6, 1e-6 - 2e-5),
        ({"parity": {"min_top1_agreement": 1.0}}, {"parity": ParityResult(0.0, 0.95, 64, ParityBudget(atol=1e-3, min_top1_agreement=0.9))},
         "parity.top1_agreement", 95.0, 100.0, -5.0),
    ],
)
def test_each_failing_check_names_measured_budget_and_margin(sections, kwargs, failing, measured, limit, margin):
    result = run_gate(budget(**sections), profile=STABLE, **kwargs)
    assert not result.passed and result.exit_code == 1
    (check,) = result.problems
    assert check.name == failing and check.status == "fail"
    assert check.limit == pytest.approx(limit)
    if measured is not None:
        assert check.measured == pytest.approx(measured) and check.margin == pytest.approx(margin)
    assert check.margin < 0
    line = check.line()
    assert line.startswith(f"FAIL {failing}: measured ") and ", limit " in line and ", margin -" in line


def test_a_model_far_under_its_absolute_budget_passes_however_noisy():
    result = run_gate(budget(latency={"max_ms": 100.0}), profile=UNSTABLE)
    assert result.passed and by_name(result)["latency.p50.max_ms"].status == "pass"
    assert "unstable; noise fails nothing by itself" in result.notes[0]


def test_a_noisy_model_near_its_budget_is_inconclusive_never_a_pass():
    result = run_gate(budget(latency={"max_ms": UNSTABLE.stat("p50")}), profile=UNSTABLE)
    check = by_name(result)["latency.p50.max_ms"]
    assert check.status == "inconclusive" and result.exit_code == 4
    assert "undecided" in check.message and "straddles the limit" in check.message
    (case,) = ET.fromstring(gate_junit(result)).iter("testcase")
    assert case.find("failure").get("type") == "inconclusive"


@pytest.mark.parametrize("seed", range(4))
def test_paired_in_this_job_a_10_percent_regression_fails_and_the_same_model_passes_on_a_busy_machine(seed):
    gate = budget(latency={"max_ms": 50.0, "max_regression_pct": 5})
    slower = paired_gate(gate, 1.0, 1.10, seed)
    (check,) = slower.problems
    assert check.name == "latency.p50.regression" and check.status == "fail" and check.unit == "%"
    assert check.measured == pytest.approx(10, abs=3) and check.margin < 0
    assert check.message.startswith("paired in this job: latency.p50.regression: misses")
    assert slower.comparison == "paired in this job" and slower.notes[1].startswith("baseline: p50 ")
    same = paired_gate(gate, 1.0, 1.0, seed)
    assert same.passed, [c.line() for c in same.checks]


@pytest.mark.parametrize("seed", range(3))
def test_a_speedup_over_the_released_model_is_judged_paired_on_a_busy_machine(seed):
    """``latency.min_speedup``, a run's key, means the same in a gate budget: times faster than the
    reference, here the released model measured beside the candidate."""
    gate = budget(latency={"min_speedup": 1.5})
    faster = paired_gate(gate, 1.0, 0.5, seed)
    assert faster.passed and [c.name for c in faster.checks] == ["latency.p50.min_speedup"]
    (check,) = paired_gate(gate, 1.0, 0.9, seed).problems
    assert check.status == "fail" and check.unit == "x" and check.limit == pytest.approx(1 / 1.5)


def test_a_throughput_limit_is_a_latency_limit_at_the_measured_batch():
    """``latency.min_throughput``: items per second at the profile's batch (here 1 item per 2 ms call)."""
    profile = profile_from_samples(latencies(2.0, seed=1))
    met, missed = (by_name(run_gate(budget(latency={"min_throughput": items}), profile=profile))
                   ["latency.p50.min_throughput"] for items in (400.0, 600.0))
    assert (met.status, missed.status) == ("pass", "fail") and met.limit == pytest.approx(2.5)


def test_a_stored_baseline_is_judged_with_the_between_run_tolerance():
    gate = budget(latency={"max_regression_pct": 5})
    base = profile_from_samples(latencies(2.0, seed=1))
    slower = run_gate(gate, profile=profile_from_samples(1.30 * latencies(2.0, seed=2)), baseline=base)
    assert by_name(slower)["latency.p50.regression"].status == "fail"
    # 8 % slower is within what moves between two runs: undecided, and the message says what settles it.
    unsure = by_name(run_gate(gate, profile=profile_from_samples(1.08 * latencies(2.0, seed=2)), baseline=base))
    check = unsure["latency.p50.regression"]
    assert check.status == "inconclusive" and "widened by ±10%" in check.message
    assert "--baseline-model" in check.message
    # A tighter tolerance, for a team that measured its runner, decides the same data.
    tight = budget(latency={"max_regression_pct": 5, "between_run_tolerance": 0.0})
    assert by_name(run_gate(tight, profile=profile_from_samples(1.08 * latencies(2.0, seed=2)),
                            baseline=base))["latency.p50.regression"].status == "fail"


def test_a_stored_baseline_from_another_target_is_refused():
    with pytest.raises(InputError, match="another target .*--baseline-model"):
        run_gate(budget(latency={"max_regression_pct": 5}), profile=STABLE,
                 baseline=profile_from_samples(latencies(2.0, seed=2), cpu="another runner"))


def test_without_a_parity_budget_the_parity_result_is_judged_by_its_own_thresholds():
    failing = ParityResult(max_abs_diff=0.5, top1_agreement=0.5, samples=64, limits=ParityBudget(atol=1e-3, min_top1_agreement=0.99))
    result = run_gate(budget(size={"max_mb": 10}), profile=STABLE, file=ModelFile(1, 150, 800), parity=failing)
    assert [c.name for c in result.problems] == ["parity.max_abs_diff", "parity.top1_agreement"]


@pytest.mark.parametrize(
    ("sections", "kwargs", "match"),
    [
        ({"latency": {"max_regression_pct": 5}}, {}, "pass --baseline-model"),
        ({"latency": {"max_regression_pct": 5}}, {"baseline": STABLE, "paired": True}, "verdict is missing"),
        ({"accuracy": {"min": 90}}, {}, "pass --data"),
        ({"accuracy": {"max_drop": 1}}, {"metrics": {"accuracy": 0.9}}, "baseline records no accuracy"),
        ({"size": {"max_mb": 1}}, {}, "size.mb, which was not measured"),
        ({"parity": {"atol": 1e-3}}, {}, "no source model"),
    ],
)
def test_a_check_without_what_it_needs_is_an_input_error(sections, kwargs, match):
    with pytest.raises(InputError, match=match):
        run_gate(budget(**sections), profile=STABLE, **kwargs)
