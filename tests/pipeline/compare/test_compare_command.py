import json

import pytest

from pipeline.cli import main
from tests.pipeline.compare.html_checks import inline_images
from tests.pipeline.compare.synthetic_profiles import latencies, profile_from_samples, write_gate_report


def save(tmp_path, name, samples):
    path = tmp_path / name
    profile_from_samples(samples).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("factor", "cv", "code", "verdict"),
    [(1.0, 0.03, 0, "no change"), (1.10, 0.03, 1, "regression"), (0.8, 0.03, 0, "improvement"), (1.0, 0.4, 1, "inconclusive")],
)
def test_compare_two_profiles_exits_by_the_verdict(tmp_path, capsys, factor, cv, code, verdict):
    base = save(tmp_path, "base.json", latencies(seed=1))
    new = save(tmp_path, "new.json", factor * latencies(cv=cv, seed=2))
    out = tmp_path / "out"
    assert main(["compare", base, new, "--json", str(out / "c.json"), "--markdown", str(out / "c.md"),
                 "--html", str(out / "c.html")]) == code
    stdout = capsys.readouterr().out
    assert f"spiral compare: {verdict}: p50 " in stdout
    assert json.loads((out / "c.json").read_text())["verdict"] == verdict
    assert (out / "c.md").read_text().startswith(f"## spiral compare: {verdict}")
    assert len(inline_images((out / "c.html").read_text())) == 1


def test_the_minimum_effect_and_the_deciding_statistic_are_options(tmp_path, capsys):
    base = save(tmp_path, "base.json", latencies(seed=1))
    new = save(tmp_path, "new.json", 1.10 * latencies(seed=2))
    assert main(["compare", base, new, "--min-effect", "15"]) == 0
    assert main(["compare", base, new, "--statistic", "mean"]) == 1
    assert "regression: mean +" in capsys.readouterr().out


def test_compare_a_history_directory_draws_the_trend(tmp_path, capsys):
    history = tmp_path / "releases"
    history.mkdir()
    for i, ms in enumerate((2.0, 2.0, 2.5)):
        write_gate_report(history / f"v{i}.json", ms, 0.9, f"2024-0{i + 1}-01T00:00:00+00:00", seed=i)
    assert main(["compare", str(history), "--html", str(tmp_path / "h.html")]) == 1  # the newest regressed
    assert "## spiral history: 3 releases" in capsys.readouterr().out
    assert len(inline_images((tmp_path / "h.html").read_text())) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a.json", "b.json", "c.json"], "give two profiles"),
        (["missing.json", "missing.json"], "cannot read"),
        (["missing-dir"], "history directory not found"),
        (["a.json", "a.json", "--alpha", "2"], "alpha must be between 0 and 1"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save(tmp_path, "a.json", latencies())
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
