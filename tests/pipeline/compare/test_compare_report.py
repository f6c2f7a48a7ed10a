import json
import re

import spiralprune
from spiralprune.pipeline.compare.history import build_history
from spiralprune.pipeline.compare.profiles import compare_runs
from spiralprune.pipeline.compare.releases import Release, load_history
from spiralprune.pipeline.compare.report import (
    COMPARE_SCHEMA_VERSION,
    comparison_html,
    comparison_json,
    comparison_markdown,
    headline,
    history_html,
    history_json,
    history_markdown,
)
from tests.pipeline.compare.html_checks import inline_images
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples, write_gate_report


def releases(tmp_path, factor: float):
    base = Release("v1", tmp_path / "v1.json", profile_from_samples(latencies(seed=1)), None, None)
    new = Release("v2", tmp_path / "v2.json", profile_from_samples(factor * latencies(seed=2)), None, None)
    return base, new, compare_runs(base.profile, new.profile)


def test_a_regression_report_names_the_change_its_interval_the_rule_and_the_kind_of_comparison(tmp_path):
    base, new, comparison = releases(tmp_path, 1.30)
    assert headline(comparison).startswith("regression: p50 +")
    md = comparison_markdown(comparison, base, new)
    assert md.startswith("## spiralprune compare: regression: p50 +") and "95% CI" in md
    assert "| 1 | p50 |" in md and "Comparison: stored baseline from another run." in md
    assert "widened by ±10%" in md and "regression: misses" in md
    assert len(md) < 5000  # sized for a pull-request comment
    data = comparison_json(comparison, base, new)
    assert data["schema_version"] == COMPARE_SCHEMA_VERSION and data["kind"] == "spiral-compare"
    assert data["spiral"] == spiralprune.__version__
    assert data["verdict"] == "regression" and data["comparison"] == "stored baseline from another run"
    assert json.loads(json.dumps(data)) == data


def test_an_inconclusive_report_says_to_measure_both_paired(tmp_path):
    base, new, comparison = releases(tmp_path, 1.08)
    md = comparison_markdown(comparison, base, new)
    assert md.startswith("## spiralprune compare: inconclusive") and "spiralprune compare BASE.onnx NEW.onnx" in md


def test_the_html_report_is_self_contained_with_a_distribution_plot(tmp_path):
    base, new, comparison = releases(tmp_path, 0.7)
    html = comparison_html(comparison, base, new)
    assert len(inline_images(html)) == 1
    assert "improvement" in html


def test_the_history_report_draws_the_trend(tmp_path):
    for i, ms in enumerate((2.0, 2.1, 2.0, 2.05)):
        write_gate_report(tmp_path / f"r{i}.json", ms, 0.9, seed=i)
    history = build_history(load_history(tmp_path))
    md = history_markdown(history)
    assert len(re.findall(r"^\| r\d \|", md, flags=re.M)) == 4 and "Newest vs the one before" in md
    images = inline_images(history_html(history))
    assert len(images) == 2  # the trend and the newest release's distribution against the one before
    data = history_json(history)
    assert data["kind"] == "spiral-history" and len(data["releases"]) == 4
