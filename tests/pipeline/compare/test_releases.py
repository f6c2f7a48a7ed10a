import json
from dataclasses import asdict
from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.pipeline.compare.history import build_history
from spiralprune.pipeline.compare.releases import load_history, load_release
from spiralprune.pipeline.report.run import build_report
from spiralprune.pipeline.tasks.metric import Metric
from tests.ledger_entries import ledger_entry
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples, write_gate_report


def write_run(run_dir: Path, accepted: bool = True) -> Path:
    step_dir = run_dir / "steps" / "step-01-try-1"
    step_dir.mkdir(parents=True)
    profile_from_samples(latencies(1.5)).save(step_dir / "profile.json")
    entry = ledger_entry(1, accepted=accepted, accuracy=0.97, ms=1.5, meets_final=True)
    report = build_report({}, {"final_ms": 2.0, "metric": asdict(Metric())}, {}, [entry], "done", run_dir)
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir / "report.json"


def test_a_profile_a_gate_report_and_a_run_report_are_releases(tmp_path):
    profile_path = tmp_path / "profile.json"
    profile_from_samples(latencies(2.0)).save(profile_path)
    release = load_release(profile_path)
    assert release.metrics is None and release.created is None and release.profile.stat() == pytest.approx(2.0, rel=0.02)

    gate = load_release(write_gate_report(tmp_path / "gate.json", 3.0, 0.95))
    assert gate.metrics == {"accuracy": 0.95} and gate.created and gate.profile.stat() == pytest.approx(3.0, rel=0.02)

    run = load_release(write_run(tmp_path / "run"))
    assert run.metrics["accuracy"] == 0.97 and run.label == "run/steps/step-01-try-1" and run.metric == Metric()
    assert run.profile.stat() == pytest.approx(1.5, rel=0.02)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "neither a spiralprune profile"),
        ('{"kind": "something"}', "neither a spiralprune profile"),
        ('{"kind": "spiral-gate", "profile": {"schema_version": 99}}', "schema_version 99"),
        ('{"schema_version": 1, "measurements": [{"batch": 1}]}', "malformed profile"),
    ],
)
def test_what_is_not_a_release_is_an_input_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        load_release(path)
    assert "bad.json" in str(info.value)


def test_a_run_without_an_accepted_step_or_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="accepted no step"):
        load_release(write_run(tmp_path / "run", accepted=False))
    with pytest.raises(InputError, match="cannot read"):
        load_release(tmp_path / "missing.json")


def test_history_is_ordered_by_date_when_every_file_has_one_else_by_name(tmp_path):
    dated = tmp_path / "dated"
    dated.mkdir()
    write_gate_report(dated / "a.json", 3.0, 0.9, "2024-03-01T00:00:00+00:00")
    write_gate_report(dated / "b.json", 2.0, 0.9, "2024-01-01T00:00:00+00:00")
    write_gate_report(dated / "c.json", 2.5, 0.9, "2024-02-01T00:00:00")
    assert [r.source.name for r in load_history(dated)] == ["b.json", "c.json", "a.json"]

    named = tmp_path / "named"
    named.mkdir()
    for name, ms in (("v2.json", 2.0), ("v1.json", 1.0), ("v3.json", 3.0)):
        profile_from_samples(latencies(ms)).save(named / name)
    assert [r.source.name for r in load_history(named)] == ["v1.json", "v2.json", "v3.json"]


def test_history_trend_and_the_newest_against_the_one_before(tmp_path):
    for i, (ms, acc) in enumerate(((2.0, 0.90), (2.0, 0.91), (2.8, 0.92))):
        write_gate_report(tmp_path / f"r{i}.json", ms, acc, f"2024-0{i + 1}-01T00:00:00+00:00", seed=i)
    history = build_history(load_history(tmp_path))
    assert history.batch == 1
    assert [round(v, 1) for v in history.series()["p50"]] == [2.0, 2.0, 2.8]
    assert history.quality() == pytest.approx([90.0, 91.0, 92.0]) and history.metric.label == "accuracy %"
    assert history.latest.verdict == "regression" and history.exit_code == 1
    assert history.to_dict()["releases"][2]["quality"] == pytest.approx(92.0)


def test_a_detectors_history_trends_its_own_metric(tmp_path):
    """Releases gated on mAP@0.5 trend mAP@0.5, not top-1; a release judged on another
    metric, or a bare profile, has no value in that column; a malformed metric is one line."""
    map50 = Metric("map_50", 100.0, "%", True)
    write_gate_report(tmp_path / "r0.json", 2.0, 0.5, "2024-01-01T00:00:00+00:00", metric=map50)
    write_gate_report(tmp_path / "r1.json", 2.0, 0.9, "2024-02-01T00:00:00+00:00")  # judged on accuracy
    write_gate_report(tmp_path / "r2.json", 2.0, 0.55, "2024-03-01T00:00:00+00:00", metric=map50)
    history = build_history(load_history(tmp_path))
    assert history.metric == map50 and history.quality() == pytest.approx([50.0, None, 55.0])
    assert history.to_dict()["metric"]["name"] == "map_50"
    report = json.loads((tmp_path / "r2.json").read_text())
    report["metric"] = {"name": "map_50", "scale": "100"}
    (tmp_path / "r2.json").write_text(json.dumps(report))
    with pytest.raises(InputError, match="r2.json: malformed metric"):
        load_history(tmp_path)


def test_a_history_whose_newest_two_were_measured_on_different_targets_draws_the_trend_but_decides_nothing(tmp_path):
    profile_from_samples(latencies(2.0, seed=1)).save(tmp_path / "v1.json")
    profile_from_samples(latencies(2.0, seed=2), cpu="another runner").save(tmp_path / "v2.json")
    history = build_history(load_history(tmp_path))
    assert history.latest is None and history.exit_code == 4
    assert "not compared" in history.not_compared and "spiralprune compare BASE.onnx NEW.onnx" in history.not_compared
    assert len(history.series()["p50"]) == 2


def test_history_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_history(tmp_path / "nope")
    with pytest.raises(InputError, match="no \\*.json"):
        load_history(tmp_path)
    write_gate_report(tmp_path / "a.json", 2.0, 0.9, "yesterday")
    write_gate_report(tmp_path / "b.json", 2.0, 0.9, "2024-01-01")
    with pytest.raises(InputError, match="ISO 8601"):
        load_history(tmp_path)
