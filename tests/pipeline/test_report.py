"""Run reports: written at the end of a spiralprune run, and rendered again by ``spiralprune report RUN_DIR``."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from spiralprune.deploy.layer_profile import LayerProfile, LayerTiming
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.ledger import append_entry
from spiralprune.pipeline.passes import PASSES
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.report.run import step_cells, step_rows, write_reports
from spiralprune.pipeline.report.plots import ParetoPoint, pareto_indices
from tiny_spiral import tiny_config
from tests.ledger_entries import ledger_entry
from tests.pipeline.compare.html_checks import inline_images
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples

BUDGET = {"statistic": "p50", "teacher_ms": 4.0, "min_speedup": 1.6, "max_ms": None, "final_ms": 2.5,
          "metric": {"name": "accuracy", "scale": 100.0, "unit": "%", "higher_is_better": True},
          "teacher_quality": 97.0, "quality_limit": 96.0,
          "final": "p50 speedup >= 1.60x over the teacher, measured paired, accuracy >= 96.00% (teacher 97.00%)"}


def summary(ms: float, accuracy: float) -> dict:
    return {
        "latency_ms": {"p50": ms, "p90": 1.1 * ms, "p95": 1.15 * ms, "p99": 1.2 * ms, "mean": 1.05 * ms},
        "statistic_ms": ms, "cv": 0.03, "stable": True, "metric": "accuracy", "quality": accuracy,
        "metrics": {"accuracy": accuracy, "f1_macro": accuracy},
        "params": 1000, "macs": 100_000, "size_mb": 0.1, "parity": {"passed": True},
    }


def make_run(run_dir: Path, met: bool = True) -> tuple[dict, list[LedgerEntry]]:
    """A finished run on disk: the teacher and three attempts, with their profiles and ledger lines."""
    teacher = summary(4.0, 0.97)
    profile_from_samples(latencies(4.0, seed=0)).save(run_dir / "teacher" / "profile.json")
    attempts = [(1, 1, 3.0, 0.968, True), (2, 1, 2.0, 0.90, False), (2, 2, 2.4 if met else 2.8, 0.965, True)]
    entries = []
    for step, attempt, ms, accuracy, accepted in attempts:
        directory = f"steps/step-{step:02d}-try-{attempt}"
        profile_from_samples(latencies(ms, seed=step * 10 + attempt)).save(run_dir / directory / "profile.json")
        reason = "within budget" if accepted else "accuracy 90.00% < floor 96.00%"
        plans = [
            {"ratio": 0.25, "blocks": 0, "predicted_ms": 1.02 * ms, "ms": 1.01 * ms},
            {"ratio": 0.3, "blocks": 1, "predicted_ms": 0.97 * ms, "ms": None},
        ]
        entry = ledger_entry(step, attempt, accepted=accepted, ms=ms, accuracy=accuracy, reason=reason,
                             speedup=4.0 / ms, goal_ms=1.05 * ms, predicted_ms=1.02 * ms, plans=plans,
                             meets_final=ms <= BUDGET["final_ms"], blocks=["layer1.1"] if step == 2 else [])
        append_entry(run_dir / "ledger.jsonl", entry)
        entries.append(entry)
    return teacher, entries


def test_a_run_writes_json_markdown_and_a_self_contained_html_page(tmp_path):
    teacher, entries = make_run(tmp_path)
    config = parse_config(tiny_config())
    paths = write_reports(tmp_path, config, BUDGET, teacher, entries, "final budget met")
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    report = json.loads(paths[0].read_text())
    assert report["schema_version"] == 1 and report["kind"] == "spiral-run"
    assert report["met_budget"] and report["best"]["dir"] == "steps/step-02-try-2"
    md = paths[1].read_text()
    assert md.count("\n| ") == 5 and "| step 2 try 1 | 2.000 | 2.200 | 2.040 |" in md and "rejected" in md
    html = paths[2].read_text()
    assert len(inline_images(html)) == 2  # latency distribution of each step, accuracy vs latency
    assert "accuracy 90.00% &lt; floor 96.00%" in html
    # Every screened plan of every step: predicted, and measured only where it was compiled.
    assert html.count("<h3>Step ") == 3 and "2 latency plans for 2.100 ms, chosen 25.0%" in html
    assert "for 2.100 ms, chosen 25.0% and residual blocks layer1.1</h3>" in html  # a plan that removed a block
    assert '<td class="num">30.0%</td><td class="num">1</td><td class="num">1.940</td><td class="num"></td>' in html


def test_step_rows_put_the_teacher_first():
    rows = step_rows(summary(4.0, 0.97), [ledger_entry(1, accepted=False).to_json()])
    assert [(r["name"], r["verdict"]) for r in rows] == [("teacher", "baseline"), ("step 1 try 1", "rejected")]


def test_a_step_the_judge_could_not_pair_shows_no_speedup():
    """No paired round ran on a free CPU: the ledger's speedup is NaN, and the table says n/a, not nanx."""
    rows = step_rows(summary(4.0, 0.97), [ledger_entry(1, accepted=False, speedup=float("nan")).to_json()])
    assert [step_cells(row, BUDGET)[4] for row in rows] == ["1.00x", "n/a"]


@pytest.mark.parametrize("met", [True, False])
def test_spiral_report_renders_a_finished_run_from_its_report_and_ledger(tmp_path, capsys, met):
    teacher, entries = make_run(tmp_path, met)
    write_reports(tmp_path, parse_config(tiny_config()), BUDGET, teacher, entries[:1], "stopped")
    (tmp_path / "report.html").unlink()
    assert main(["report", str(tmp_path)]) == (0 if met else 1)
    assert "| step 2 try 2 |" in capsys.readouterr().out  # steps come from the ledger, not the stale report
    assert len(inline_images((tmp_path / "report.html").read_text())) == 2
    suite = ET.parse(tmp_path / "report.junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["step 1 try 1", "step 2 try 1", "step 2 try 2", "final budget"]
    assert cases["step 2 try 1"].find("skipped").get("message") == "accuracy 90.00% < floor 96.00%"
    assert (cases["final budget"].find("failure") is None) == met


def test_spiral_report_writes_only_the_outputs_asked_for(tmp_path, capsys):
    teacher, entries = make_run(tmp_path)
    write_reports(tmp_path, parse_config(tiny_config()), BUDGET, teacher, entries, "final budget met")
    out = tmp_path / "elsewhere" / "run.md"
    assert main(["report", str(tmp_path), "--markdown", str(out)]) == 0
    assert out.read_text() == (tmp_path / "report.md").read_text()
    assert not (tmp_path / "report.junit.xml").exists()


def test_spiral_report_on_a_directory_that_is_not_a_finished_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"schema_version": 7}')
    assert main(["report", str(tmp_path)]) == 2
    assert "schema version 1" in capsys.readouterr().err


def test_the_pareto_front_keeps_the_points_nothing_beats():
    points = [ParetoPoint("teacher", 4.0, 97.0, "baseline"), ParetoPoint("a", 3.0, 96.8, "accepted"),
              ParetoPoint("b", 3.5, 96.0, "rejected"), ParetoPoint("c", 2.0, 90.0, "rejected"),
              ParetoPoint("d", 3.0, 96.8, "accepted")]
    assert [points[i].label for i in pareto_indices(points)] == ["c", "a", "d", "teacher"]


def test_the_report_explains_the_result_with_its_plans_prediction_beside_each_layer(tmp_path):
    """The best step's layer profile (its try's) beside its plan's per-layer prediction, largest difference
    first; a layer the table priced at nothing has no ratio; an INT8 result is explained without one."""
    profile = profile_from_samples(latencies(2.0, seed=0))
    layers = LayerProfile("onnxruntime", [1], [
        LayerTiming("conv1", "Conv", "arithmetic", "CPUExecutionProvider", [1.5], macs=10**6),
        LayerTiming("fc", "Gemm", "arithmetic", "CPUExecutionProvider", [0.2], macs=10**3)])
    profile.measurements[0].layers = layers.record(profile.measurements[0].rounds(), 0.95)
    for directory in ("steps/step-01-try-1", "steps/quantize"):
        profile.save(tmp_path / directory / "profile.json")
    step = ledger_entry(1, predicted_layers={"conv1": 1.0, "fc": 0.0})
    paths = write_reports(tmp_path, parse_config(tiny_config()), BUDGET, summary(4.0, 0.97), [step], "done")
    section = json.loads(paths[0].read_text())["layers"]
    assert section["model"] == "step 1 try 1"
    assert [r["name"] for r in section["explanation"]["layers"]] == ["conv1", "fc"]
    assert section["predicted"] == [{"name": "conv1", "predicted_ms": 1.0, "measured_ms": 1.5, "ratio": 1.5},
                                    {"name": "fc", "predicted_ms": 0.0, "measured_ms": 0.2, "ratio": None}]
    md = paths[1].read_text()
    assert "### Where the time of step 1 try 1 goes" in md and "| conv1 | 1.000 | 1.500 | 1.50x |" in md
    assert len(inline_images(paths[2].read_text())) == 3  # the layers' shares beside the distribution and the front
    int8 = ledger_entry(1, kind="quantize", dir="steps/quantize")
    paths = write_reports(tmp_path, parse_config(tiny_config()), BUDGET, summary(4.0, 0.97), [step, int8], "done")
    section = json.loads(paths[0].read_text())["layers"]
    assert section["model"] == "INT8 quantization" and section["predicted"] == []


def test_the_report_shows_the_checks_each_model_was_judged_by(tmp_path):
    """Every try's checks (``spiralprune.pipeline.acceptance``), rendered as the gate renders its own: name,
    status, measured, limit, signed margin and the sentence; a line from before checks has none."""
    from spiralprune.deploy.model_file import ModelFile
    from spiralprune.pipeline.acceptance import Evidence, MaxSize, QualityLimit, decide

    def checks(accuracy: float) -> list[dict]:
        evidence = Evidence(metrics={"accuracy": accuracy}, file=ModelFile(0.1, 1000, 20000))
        return [c.to_dict() for c in decide(evidence, [QualityLimit(96.0, label="min"), MaxSize(1.0)])]

    entries = [ledger_entry(1, 1, accepted=False, accuracy=0.90, checks=checks(0.90)),
               ledger_entry(1, 2, accuracy=0.97, checks=checks(0.97)), ledger_entry(2, 1, accuracy=0.97)]
    paths = write_reports(tmp_path, parse_config(tiny_config()), BUDGET, summary(4.0, 0.97), entries, "done")
    md = paths[1].read_text()
    assert "### step 1 try 1: rejected" in md and "### step 1 try 2: accepted" in md and "### step 2 try 1" not in md
    assert "| accuracy.min | fail | 90.00% | 96.00% | -6.00% | accuracy 90.00% < min 96.00% |" in md
    assert "| size.mb | pass | 0.100 MB | 1.000 MB | +0.900 MB |" in md
    html = paths[2].read_text()
    assert "<h3>step 1 try 1: rejected</h3>" in html and '<tr class="fail"><td>accuracy.min</td>' in html


@pytest.mark.parametrize("kind", PASSES)
def test_a_line_of_every_pass_is_a_row_of_every_report(tmp_path, kind):
    """Whichever pass wrote a line, its record renders by the fields every line has: a row of the
    Markdown and HTML tables and a case of the JUnit XML, under the line's name."""
    entries = [ledger_entry(1)] + ([] if kind == "step" else [ledger_entry(1, kind=kind, dir=f"steps/{kind}")])
    name = entries[-1].name
    paths = write_reports(tmp_path, parse_config(tiny_config()), BUDGET, summary(4.0, 0.97), entries, "done")
    assert json.loads(paths[0].read_text())["best"]["name"] == name
    assert f"| {name} |" in paths[1].read_text() and f"<td>{name}</td>" in paths[2].read_text()
    for entry in entries:
        append_entry(tmp_path / "ledger.jsonl", entry)
    assert main(["report", str(tmp_path)]) == 0
    cases = ET.parse(tmp_path / "report.junit.xml").getroot().iter("testcase")
    assert name in {case.get("name") for case in cases}
