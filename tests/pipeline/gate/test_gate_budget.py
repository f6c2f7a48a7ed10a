from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.pipeline.gate.budget import GateBudget, load_budget


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    return path


def test_a_full_budget_loads_with_defaults_filled_in(tmp_path):
    budget = load_budget(write(tmp_path, """
latency: {statistic: p90, max_ms: 5, max_regression_pct: 3}
accuracy: {min: 95, max_drop: 0.5}
size: {max_mb: 20, max_params: 5000000}
parity: {atol: 1.0e-4}
profile: {max_duration_s: 20, confidence: 0.99}
"""))
    assert budget.latency.statistic == "p90" and budget.latency.max_ms == 5.0
    assert budget.latency.between_run_tolerance == 0.10
    assert budget.parity.min_top1_agreement == 0.99
    assert budget.profile == ProfileSettings(max_duration_s=20, confidence=0.99)
    assert budget.needs_baseline == ["latency.max_regression_pct", "accuracy.max_drop"]
    assert GateBudget(size={"max_mb": 1}).profile == ProfileSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latncy: {max_ms: 5}", "unknown key 'latncy'; did you mean 'latency'?"),
        ("latency: {max_msec: 5}", "unknown key 'latency.max_msec'; did you mean 'max_ms'?"),
        ("size: {max_mb: 1, max_parameters: 10}", "unknown key 'size.max_parameters'; did you mean 'max_params'?"),
        ("latency: {statistic: p75, max_ms: 5}", "latency.statistic: Input should be 'p50', 'p90', 'p95', 'p99' or 'mean'"),
        ("latency: {max_ms: -1}", "latency.max_ms: Input should be greater than 0"),
        ("latency: {max_ms: .inf}", "latency.max_ms: Input should be a finite number"),
        ("latency: {max_ms: .nan}", "latency.max_ms: Input should be a finite number"),
        ("latency: {max_ms: 5, between_run_tolerance: 1.5}", "latency.between_run_tolerance: Input should be less than 1"),
        ("latency: {max_ms: 5, alpha: 0.01}", "unknown key 'latency.alpha'"),
        ("stability: {max_cv: 0.1}\nsize: {max_mb: 1}", "unknown key 'stability'"),
        ("profile: {min_samples: 10}\nsize: {max_mb: 1}", "profile.min_samples: Unexpected keyword argument"),
        ("latency: {statistic: p50}", "latency: latency needs max_ms, min_throughput, min_speedup or max_regression_pct"),
        ("accuracy: {min: 101}", "accuracy.min: accuracy is in percent; 101.0 is not between 0 and 100"),
        ("accuracy: {}", "accuracy: a quality budget needs min (max, for a lower-is-better metric) or max_drop"),
        ("metric: {name: miou, min: 50}", "metric: task classification measures accuracy"),
        ("task: {kind: segmentation}\nmetric: {name: map, min: 50}", "metric: task segmentation measures miou"),
        ("size: {max_params: 0}", "size.max_params: Input should be greater than or equal to 1"),
        ("profile: {max_duration_s: 5}", "the budget checks nothing"),
        ("latency: 5", "latency: Input should be a valid dictionary"),
        ("- latency", "expected a mapping of keys, got list"),
        ("latency: {max_ms: [", "not valid YAML"),
    ],
)
def test_a_bad_budget_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(InputError) as info:
        load_budget(write(tmp_path, text))
    text_of_error = str(info.value)
    assert message in text_of_error and "\n" not in text_of_error
    assert text_of_error.startswith(str(tmp_path / "budget.yaml"))


def test_a_missing_budget_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read budget"):
        load_budget(tmp_path / "missing.yaml")
