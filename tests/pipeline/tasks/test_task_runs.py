"""A segmenter and a detector through ``spiralprune run`` (a real spiral: prune, train, export, measure, judge) with
a ``metric:`` budget, and through ``spiralprune gate``, ``spiralprune export`` and ``spiralprune quantize`` with their task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spiralprune.pipeline.casestudies.scenes import FASHION_MNIST
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.ledger import read_ledger
from tests.tiny_spiral import tiny_config

pytestmark = pytest.mark.skipif(not FASHION_MNIST.exists(), reason="Debian's dataset-fashion-mnist is not installed")

CASES = {
    "segmentation": {
        "model": "spiralprune.pipeline.zoo.segmenter:tiny_segmenter?width=8", "input_shape": [1, 1, 32, 32],
        "num_classes": 11, "task": {"kind": "segmentation"}, "data": {"source": "tests.pipeline.tasks.scenes_data:segmentation"},
        "budget": {"accuracy": None, "metric": {"name": "miou", "min": 0.0}},
    },
    "detection": {
        "model": "spiralprune.pipeline.zoo.yolo:yolo_detector?width=4", "input_shape": [1, 1, 64, 64], "num_classes": 10,
        "task": {"kind": "detection", "loss": "spiralprune.pipeline.zoo.yolo:yolo_loss",
                 "postprocess": "spiralprune.pipeline.zoo.yolo:yolo_decode"},
        "data": {"source": "tests.pipeline.tasks.scenes_data:detection"},
        "budget": {"accuracy": None, "metric": {"name": "map_50", "min": 0.0}},
    },
}


@pytest.mark.parametrize("kind", CASES)
def test_a_task_runs_through_the_spiral_and_the_gate(kind: str, tmp_path: Path, monkeypatch, capsys):
    import yaml

    monkeypatch.chdir(Path(__file__).parents[3])  # the data factory is found from the working directory
    case = {**CASES[kind], "budget": {**CASES[kind]["budget"], "parity": {"samples": 8}}}
    config = tiny_config(**case, distill={"epochs": 1, "lr": 0.002, "optimizer": "adamw"},
                         teacher_training={"epochs": 1, "lr": 0.002, "optimizer": "adamw", "weights": {"ce": 1.0}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["run", str(path), "--out", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    entries = read_ledger(tmp_path / "run" / "ledger.jsonl")
    metric = CASES[kind]["budget"]["metric"]["name"]
    assert entries and all(e.metric == {"segmentation": "miou", "detection": "map"}[kind] for e in entries)
    assert all(metric in e.metrics for e in entries)
    assert any(c["name"] == f"{metric}.min" for c in entries[0].checks)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["budget"]["metric"]["name"] == metric
    assert f"{metric} %" in (tmp_path / "run" / "report.md").read_text()

    budget = tmp_path / "budget.yaml"
    budget.write_text(yaml.safe_dump({"task": CASES[kind]["task"], "metric": {"name": metric, "min": 0.0},
                                      "size": {"max_mb": 100}, "profile": config["target"]["profile"]}))
    code = main(["gate", str(tmp_path / "run" / "model.onnx"), "--backend", "ort-cpu", "--budget", str(budget), "--data",
                 CASES[kind]["data"]["source"], "--json", str(tmp_path / "gate.json")])
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert code == 0, capsys.readouterr().err
    assert {c["name"] for c in gate["checks"]} >= {f"{metric}.min", "size.mb"}

    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"task": CASES[kind]["task"]}))
    code = main(["export", str(tmp_path / "run" / "model"), "--out", str(tmp_path / "exported.onnx"), "--task", str(task)])
    assert code == 0 and "agreement" in capsys.readouterr().out
    code = main(["quantize", str(tmp_path / "run" / "model"), "--data", CASES[kind]["data"]["source"], "--task",
                 str(task), "--max-duration", "1", "--recovery-epochs", "0", "--calibration-batches", "2",
                 "--json", str(tmp_path / "int8.json")])
    int8 = json.loads((tmp_path / "int8.json").read_text())
    assert code in (0, 1, 4)
    own = {"segmentation": "miou", "detection": "map"}[kind]
    assert any(c["name"] == f"{own}.max_drop" for c in int8["checks"])
    assert f"{own} %" in capsys.readouterr().out


def test_a_custom_lower_is_better_metric_goes_through_quantize(tmp_path: Path, monkeypatch, capsys):
    """A regressor judged on its error: the INT8 stage measures it, judges its rise (not a fall) against
    ``max_drop`` and names it in the table; the remedies that need class logits say why they did not run."""
    import yaml

    monkeypatch.chdir(Path(__file__).parents[3])
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"task": {
        "kind": "custom", "loss": "tests.pipeline.tasks.custom_task:mse", "metric": "tests.pipeline.tasks.custom_task:mae",
        "metric_name": "mae", "higher_is_better": False}}))
    code = main(["quantize", "tests.pipeline.tasks.custom_task:regressor", "--input-shape", "1,1,16,16", "--data",
                 "tests.pipeline.tasks.custom_task:data", "--task", str(task), "--max-drop", "0.5", "--max-duration", "1",
                 "--calibration-batches", "2", "--batch-size", "8", "--json", str(tmp_path / "int8.json")])
    out = capsys.readouterr().out
    int8 = json.loads((tmp_path / "int8.json").read_text())
    check = next(c for c in int8["checks"] if c["name"] == "mae.max_drop")
    assert "a rise of" in check["message"] and check["limit"] == 0.5
    assert check["measured"] == pytest.approx(int8["accuracy"]["int8"] - int8["accuracy"]["float"])
    statuses = {c["status"] for c in int8["checks"]}
    assert code == (1 if "fail" in statuses else 4 if "inconclusive" in statuses else 0)
    assert " mae " in out and "mae %" not in out
