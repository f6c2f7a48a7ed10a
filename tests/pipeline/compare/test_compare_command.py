"""``spiralprune compare`` end to end: two profiles from separate runs (synthetic latencies of known
distributions), two real tiny ONNX models measured paired here (no assertion on this machine's
speed), and a history directory."""

import json

import pytest
import torch
from torch import nn

from spiralprune.pipeline.cli import main
from spiralprune.pipeline.export import export_onnx
from tests.pipeline.compare.html_checks import inline_images
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples, write_gate_report


def save(tmp_path, name, samples, cpu="test CPU"):
    path = tmp_path / name
    profile_from_samples(samples, cpu=cpu).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("factor", "code", "verdict"),
    [(1.0, 4, "inconclusive"), (1.30, 1, "regression"), (0.7, 0, "improvement")],
)
def test_compare_two_profiles_from_separate_runs_exits_by_the_verdict(tmp_path, capsys, factor, code, verdict):
    base = save(tmp_path, "base.json", latencies(seed=1))
    new = save(tmp_path, "new.json", factor * latencies(seed=2))
    out = tmp_path / "out"
    assert main(["compare", base, new, "--json", str(out / "c.json"), "--markdown", str(out / "c.md"),
                 "--html", str(out / "c.html")]) == code
    stdout = capsys.readouterr().out
    assert f"spiralprune compare (stored baseline from another run): {verdict}: p50 " in stdout
    data = json.loads((out / "c.json").read_text())
    assert data["verdict"] == verdict and data["tolerance"] == 0.10
    assert (out / "c.md").read_text().startswith(f"## spiralprune compare: {verdict}")
    assert len(inline_images((out / "c.html").read_text())) == 1


def test_the_minimum_effect_the_tolerance_the_statistic_and_the_confidence_are_options(tmp_path, capsys):
    base = save(tmp_path, "base.json", latencies(seed=1))
    new = save(tmp_path, "new.json", 1.10 * latencies(seed=2))
    assert main(["compare", base, new]) == 4  # within what moves between runs: inconclusive, undecided
    assert main(["compare", base, new, "--tolerance", "0"]) == 1
    assert "regression: p50 +" in capsys.readouterr().out
    assert main(["compare", base, new, "--tolerance", "0", "--min-effect", "25"]) == 0
    assert main(["compare", base, new, "--tolerance", "0", "--statistic", "mean"]) == 1
    assert "regression: mean +" in capsys.readouterr().out
    assert main(["compare", base, new, "--tolerance", "0", "--confidence", "0.9"]) == 1
    assert "(90% CI +" in capsys.readouterr().out  # the measurement's confidence is the verdict's


def _model(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 8, 3, padding=1)).eval()


@pytest.mark.slow
def test_two_onnx_models_are_measured_paired_in_one_process(tmp_path, capsys):
    base = export_onnx(_model(8), torch.zeros(1, 3, 16, 16), tmp_path / "base.onnx")
    new = export_onnx(_model(16), torch.zeros(1, 3, 16, 16), tmp_path / "new.onnx")
    code = main(["compare", str(base), str(new), "--threads", "1", "--max-duration", "3",
                 "--json", str(tmp_path / "c.json"), "--markdown", str(tmp_path / "c.md")])
    stdout = capsys.readouterr().out
    data = json.loads((tmp_path / "c.json").read_text())
    assert code == {"regression": 1, "inconclusive": 4}.get(data["verdict"], 0)
    assert "spiralprune compare (paired in this job): " in stdout
    assert data["comparison"] == "paired in this job" and data["tolerance"] == 0.0
    verdict = data["batches"]["1"]["verdict"]
    assert verdict["question"]["limit"] == pytest.approx(1.05) and verdict["rounds"] + verdict["set_aside"] >= 10
    assert "Both models were measured in alternating rounds" in (tmp_path / "c.md").read_text()


def test_two_onnx_models_are_judged_at_each_batch_given(tmp_path, capsys):
    """``--batch 1,4`` as in ``spiralprune profile``: a paired session per batch, each judged, the worst verdict
    decides; the layers are attributed at the first."""
    base = export_onnx(_model(8), torch.zeros(1, 3, 16, 16), tmp_path / "base.onnx")
    code = main(["compare", str(base), str(base), "--threads", "1", "--max-duration", "0.5", "--batch", "1,4",
                 "--json", str(tmp_path / "c.json")])
    data = json.loads((tmp_path / "c.json").read_text())
    assert sorted(data["batches"]) == ["1", "4"] and data["attribution"]["batch"] == 1
    one, four = data["batches"]["1"], data["batches"]["4"]
    assert (one["batch"], four["batch"]) == (1, 4)
    calls = {one["call"], four["call"]}
    assert code == (1 if "regression" in calls else 4 if "inconclusive" in calls else 0)
    assert "batch 4" in capsys.readouterr().out


def test_compare_a_history_directory_draws_the_trend(tmp_path, capsys):
    history = tmp_path / "releases"
    history.mkdir()
    for i, ms in enumerate((2.0, 2.0, 2.8)):
        write_gate_report(history / f"v{i}.json", ms, 0.9, f"2024-0{i + 1}-01T00:00:00+00:00", seed=i)
    assert main(["compare", str(history), "--html", str(tmp_path / "h.html")]) == 1  # the newest regressed
    assert "## spiral history: 3 releases" in capsys.readouterr().out
    assert len(inline_images((tmp_path / "h.html").read_text())) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a.json", "b.json", "c.json"], "give two ONNX models"),
        (["missing.json", "missing.json"], "cannot read"),
        (["missing-dir"], "history directory not found"),
        (["a.json", "other.json"], "measured on another target"),
        (["a.json", "m.onnx"], "not one of each"),
        (["m.onnx", "missing.onnx"], "model file not found"),
        (["a.json", "a.json", "--confidence", "2"], "confidence must be in"),
        (["a.json", "a.json", "--tolerance", "-0.1"], "--tolerance: between_run_tolerance): between_run_tolerance: "),
        (["a.json", "a.json", "--min-effect", "-1"], "(--min-effect: max_regression_pct, "),
        (["a.json", "a.json", "--min-effect", "100"], "must be a percentage in [0, 100), got 100"),
        (["a.json", "a.json", "--batch", "8"], "the profiles share no batch 8"),
        ([".", "--batch", "1,8"], "a history's trend is drawn at one batch size"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save(tmp_path, "a.json", latencies())
    save(tmp_path, "other.json", latencies(), cpu="another machine")
    (tmp_path / "m.onnx").write_bytes(b"")
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_paired_compare_attributes_the_change_to_the_widened_layer(tmp_path, capsys):
    """A last convolution 16x wider: the change is named there in the terminal, Markdown, HTML and JSON."""
    from tests.chain_net import WIDENED, chain_net

    torch.manual_seed(0)
    base = export_onnx(chain_net(8), torch.zeros(1, 3, 16, 16), tmp_path / "base.onnx")
    torch.manual_seed(0)
    new = export_onnx(chain_net(8, wide=16), torch.zeros(1, 3, 16, 16), tmp_path / "new.onnx")
    out = {kind: tmp_path / f"c.{kind}" for kind in ("json", "md", "html")}
    main(["compare", str(base), str(new), "--threads", "1", "--max-duration", "1", "--json", str(out["json"]),
          "--markdown", str(out["md"]), "--html", str(out["html"])])
    stdout = capsys.readouterr().out
    attribution = json.loads(out["json"].read_text())["attribution"]
    assert attribution["layers"][0]["name"] == WIDENED and attribution["layers"][0]["delta_ms"] > 0
    for text in (stdout, out["md"].read_text()):
        assert "### Which layers account for the change" in text
        assert f"the largest contributor is {WIDENED} (changed" in text
    html = out["html"].read_text()
    assert "Which layers account for the change" in html and len(inline_images(html)) == 2  # distribution + bars


def test_no_layers_leaves_the_attribution_out(tmp_path, capsys):
    base = export_onnx(_model(8), torch.zeros(1, 3, 16, 16), tmp_path / "base.onnx")
    main(["compare", str(base), str(base), "--threads", "1", "--max-duration", "0.5", "--no-layers",
          "--json", str(tmp_path / "c.json")])
    assert "Which layers" not in capsys.readouterr().out
    assert "attribution" not in json.loads((tmp_path / "c.json").read_text())
