"""Exit codes that mean one thing in every command (``spiralprune.pipeline.exit_codes``): 0 success, 1 a verdict
against the change, 2 bad input, 3 an internal error (one line, the traceback in a log file), 4 undecided.

Undecided verdicts here are undecided by construction (evidence whose interval contains the limit
whatever this machine measures), never by luck."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from spiralprune.deploy.fingerprint import target_fingerprint
from spiralprune.pipeline.acceptance import Evidence, Latency, budget_rules, decide
from spiralprune.deploy.verdict import Question, judge
from spiralprune.pipeline import cli
from spiralprune.pipeline.commands.quantize import exit_code as quantize_exit_code
from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.exit_codes import MEANINGS, ExitCode, of_run
from spiralprune.pipeline.ledger import append_entry
from spiralprune.pipeline.passes.record import Training
from spiralprune.pipeline.passes.int8.config import QuantizeConfig
from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8
from spiralprune.pipeline.tasks.metric import Metric
from spiralprune.pipeline.report.run import write_reports
from tests.ledger_entries import ledger_entry
from tests.pipeline.compare.synthetic_profiles import ROUND, latencies, profile_from_samples
from tiny_spiral import tiny_config

COMMANDS = {name: cli.command_module(name) for name in cli.COMMANDS}
INTERNAL = re.compile(r"spiralprune: internal error: (\w+): (.*) \(traceback in (.+)\)")
# Arguments each command parses (its handler is replaced where it must crash), and input each refuses.
ARGUMENTS = {
    "demo": [], "run": ["config.yaml"], "prune": ["model", "--input-shape", "1,3,8,8", "--out", "pruned"],
    "export": ["model", "--out", "model.onnx"], "quantize": ["model.onnx", "--data", "digits"],
    "gate": ["model.onnx", "--backend", "ort-cpu", "--budget", "budget.yaml"], "compare": ["a.json", "b.json"],
    "report": ["run"], "profile": ["model.onnx"], "targets": [], "deploy": ["model.onnx", "--target", "jetson"],
    "join": ["run", "--node-rank", "1"],
}
BAD_INPUT = {
    "demo": (["--out", "file.txt"], "is a file"),
    "run": (["missing.yaml"], "missing.yaml"),
    "prune": (["torchvision:resnet18", "--input-shape", "1,one", "--out", "pruned"], "comma-separated"),
    "export": (["torchvision:resnet18", "--out", "model.onnx", "--opset", "5"], "--opset 5"),
    "quantize": (["model.onnx", "--data", "digits", "--threads", "0"], "--threads must be positive"),
    "gate": (["model.onnx", "--backend", "ort-cpu", "--budget", "missing.yaml"], "missing.yaml"),
    "compare": (["a.json", "b.json", "c.json"], "give two ONNX models"),
    "report": (["."], "no report.json"),
    "profile": (["model.onnx", "--threads", "0"], "--threads must be positive"),
    "targets": (["--verbose"], "unrecognized arguments: --verbose"),
    "deploy": (["model.onnx", "--target", "jetson"], "names no host"),
    "join": (["file.txt", "--node-rank", "1"], "is not a spiralprune run folder"),
}


def code_of(argv: list[str]) -> int:
    """``spiral ARGV`` in this process: its exit code, whether returned or raised by argparse."""
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


def spiral(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spiralprune.pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(cache)})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Crash logs of this test go here, not to the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def assert_internal_error(stderr: str, cache: Path, exc_type: str, message: str) -> None:
    """One line naming the exception and a log file, in the cache, that holds the whole traceback."""
    assert stderr.count("\n") == 1, stderr
    match = INTERNAL.fullmatch(stderr.strip())
    assert match and match[1] == exc_type and message in match[2], stderr
    log = Path(match[3])
    assert log.parent == cache / "spiral" / "logs" and log.name.startswith("crash-")
    assert "Traceback (most recent call last)" in log.read_text() and f"{exc_type}: " in log.read_text()


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_every_help_lists_the_exit_codes(name: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    assert code_of([name, "--help"] if name else ["--help"]) == ExitCode.OK
    help_text = capsys.readouterr().out
    codes = help_text[help_text.index("\nexit codes:\n"):]
    for code, meaning in MEANINGS.items():
        assert f"\n  {code:<5d}{meaning.split()[0]} " in codes


@pytest.mark.parametrize("name", COMMANDS)
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("not a directory")
    args, message = BAD_INPUT[name]
    assert code_of([name, *args]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("name", COMMANDS)
def test_a_usage_error_is_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert code_of([name, *ARGUMENTS[name], "--no-such-option"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unexpected_exception_is_one_line_exit_3_and_a_logged_traceback(
    name: str, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(args: object) -> int:
        raise ZeroDivisionError("a bug\non two lines")

    monkeypatch.setattr(COMMANDS[name], "run", crash)
    assert code_of([name, *ARGUMENTS[name]]) == ExitCode.INTERNAL_ERROR
    assert_internal_error(capsys.readouterr().err, cache, "ZeroDivisionError", "a bug on two lines")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback_too(where: str, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def crash(args: object) -> int:
        raise KeyError("missing")

    monkeypatch.setattr(COMMANDS["targets"], "run", crash)
    argv = ["--debug", "targets"] if where == "before" else ["targets", "--debug"]
    assert code_of(argv) == ExitCode.INTERNAL_ERROR
    *trace, last = capsys.readouterr().err.splitlines()
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "KeyError: 'missing'"
    assert_internal_error(last + "\n", cache, "KeyError", "'missing'")


def test_a_traceback_that_cannot_be_saved_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(COMMANDS["targets"], "run", lambda args: 1 / 0)
    assert code_of(["targets"]) == ExitCode.INTERNAL_ERROR
    *trace, last = capsys.readouterr().err.splitlines()
    assert trace[0] == "Traceback (most recent call last):"
    assert last.startswith("spiralprune: internal error: ZeroDivisionError: division by zero (traceback above; "
                           "it could not be saved: ")


@pytest.mark.slow
def test_a_real_crash_in_a_real_process_exits_3(tmp_path: Path) -> None:
    """torchvision refuses ``num_classes=-1`` with a RuntimeError deep inside the model's construction."""
    done = spiral("export", "torchvision:resnet18?num_classes=-1", "--out", "x.onnx", cwd=tmp_path,
                  cache=tmp_path / "cache")
    assert done.returncode == ExitCode.INTERNAL_ERROR, done.stderr
    assert_internal_error(done.stderr, tmp_path / "cache", "RuntimeError", "negative dimension -1")
    assert "resnet.py" in next((tmp_path / "cache" / "spiral" / "logs").iterdir()).read_text()


# Undecided (4) and against (1) from real judgements on evidence built to decide, or not.

@pytest.mark.slow
def test_an_aa_comparison_of_two_stored_profiles_is_undecided_in_a_real_process(tmp_path: Path) -> None:
    """The same samples on both sides: the ratio's interval, widened by what moves between runs (10 %),
    runs from at most 0.9 to at least 1.1, so it holds the limit 1.05 whatever the samples are."""
    for name in ("base.json", "new.json"):
        profile_from_samples(latencies(seed=1)).save(tmp_path / name)
    done = spiral("compare", "base.json", "new.json", cwd=tmp_path, cache=tmp_path / "cache")
    assert done.returncode == ExitCode.UNDECIDED, done.stderr
    assert "spiralprune compare (stored baseline from another run): inconclusive" in done.stdout


def test_a_history_whose_newest_two_cannot_be_compared_is_undecided(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    profile_from_samples(latencies(seed=1)).save(tmp_path / "v1.json")
    profile_from_samples(latencies(seed=2), cpu="another runner").save(tmp_path / "v2.json")
    assert code_of(["compare", str(tmp_path)]) == ExitCode.UNDECIDED
    assert "not compared" in capsys.readouterr().out


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    """Conv and ReLU on [batch, 3, 16, 16]: microseconds per call."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["output"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, 16, 16])], [weight],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(("size", "code", "summary"), [
    ({}, ExitCode.UNDECIDED, "spiralprune gate undecided: 1 of 1 checks did not pass"),
    ({"size": {"max_mb": 1e-6}}, ExitCode.AGAINST, "spiralprune gate failed: 2 of 2 checks did not pass"),
])
def test_a_gate_whose_regression_check_cannot_be_decided_exits_4_unless_a_check_failed(
    size: dict, code: ExitCode, summary: str, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored baseline's rounds are half at 1e-6 ms and half at 1e6 ms: the interval of its median
    spans both, so the candidate's ratio to it straddles any limit whatever this machine measures."""
    baseline = profile_from_samples(np.repeat([1e-6, 1e6], 10 * ROUND))
    here = target_fingerprint("ort-cpu", threads=1, precision="fp32")
    dataclasses.replace(baseline, fingerprint=here).save(tmp_path / "released.json")
    budget = {"latency": {"max_regression_pct": 5}, **size,
              "profile": {"warmup_s": 0.01, "block_s": 0.002, "min_rounds": 4, "min_duration_s": 0.02,
                          "max_duration_s": 2.0}}
    (tmp_path / "budget.yaml").write_text(yaml.safe_dump(budget))
    assert code_of(["gate", str(tiny_onnx), "--backend", "ort-cpu", "--threads", "1", "--budget",
                    str(tmp_path / "budget.yaml"), "--baseline", str(tmp_path / "released.json")]) == code
    out = capsys.readouterr().out
    assert "INCONCLUSIVE latency.p50.regression" in out and out.rstrip().endswith(summary)


STRADDLING = [0.4 + 0.01 * k for k in range(21)]  # 21 rounds from 0.4 to 0.6: the 95 % interval is 0.45 .. 0.55


@pytest.mark.parametrize("metric", [Metric(), Metric("mae", 1.0, "", False)], ids=["accuracy", "lower-is-better"])
@pytest.mark.parametrize(("limit", "drop", "code"), [
    (0.5, 0.5, ExitCode.UNDECIDED),  # the speedup undecided, the metric kept
    (0.5, 2.0, ExitCode.AGAINST),  # undecided, but too much of the metric lost
    (0.3, 0.5, ExitCode.AGAINST),  # surely not fast enough
    (0.7, 0.5, ExitCode.OK),
    (0.7, -2.0, ExitCode.OK),  # INT8 better than float, in the metric's own direction
])
def test_quantize_is_undecided_only_when_its_speedup_alone_is(limit: float, drop: float, code: ExitCode,
                                                               metric: Metric) -> None:
    """The exit code follows the INT8 stage's checks, so a lower-is-better metric (a custom task's error) is
    judged in its direction: an error that rises by ``drop`` is as bad as an accuracy that falls by it."""
    question = Question("int8 vs float", INT8, limit, FLOAT)
    verdict = judge(question, STRADDLING, 0.95)
    worse = 90.0 - drop if metric.higher_is_better else 90.0 + drop
    evidence = Evidence({question.name: verdict}, {metric.name: worse / metric.scale}, {metric.name: 90.0 / metric.scale})
    checks = decide(evidence, budget_rules(QuantizeConfig().budget, metric, latency=[Latency(question)],
                                           reference="float model"))
    assert quantize_exit_code({"checks": [c.to_dict() for c in checks]}) == code


def rejected_try(limit: float = 0.5, epochs: int = 0, parity: bool = True, step: int = 1) -> dict:
    """A try the judge measured at a speedup ratio of 0.45 .. 0.55 to the teacher against ``limit``."""
    verdict = judge(Question("final speedup", "candidate", limit, "teacher"), STRADDLING, 0.95)
    return ledger_entry(step, accepted=False, verdicts=[verdict.to_dict()], meets_final=False,
                        distill=Training(best_val_quality=None, epochs=epochs), parity={"passed": parity}).to_json()


@pytest.mark.parametrize(("steps", "met", "code"), [
    ([rejected_try()], False, ExitCode.UNDECIDED),
    ([ledger_entry(1).to_json(), rejected_try(step=2)], False, ExitCode.UNDECIDED),
    ([rejected_try(), ledger_entry(2, meets_final=False).to_json()], False, ExitCode.AGAINST),  # the last was accepted
    ([rejected_try(limit=0.3)], False, ExitCode.AGAINST),  # its latency missed
    ([rejected_try(epochs=2)], False, ExitCode.AGAINST),  # granted and distilled: rejected on accuracy or size
    ([rejected_try(parity=False)], False, ExitCode.AGAINST),
    ([], False, ExitCode.AGAINST),
    ([ledger_entry(1).to_json()], True, ExitCode.OK),
])
def test_a_run_is_undecided_when_its_last_try_was_rejected_only_on_an_undecided_latency(
    steps: list[dict], met: bool, code: ExitCode
) -> None:
    assert of_run(met, steps) == code


def test_spiral_report_exits_with_the_run_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = {"latency_ms": {"p50": 4.0, "p90": 4.4, "p95": 4.6, "p99": 4.8, "mean": 4.2}, "statistic_ms": 4.0,
               "cv": 0.03, "stable": True, "metric": "accuracy", "quality": 0.97,
               "metrics": {"accuracy": 0.97, "f1_macro": 0.97}, "params": 1000, "macs": 100_000,
               "size_mb": 0.1, "parity": {"passed": True}}
    profile_from_samples(latencies(4.0)).save(tmp_path / "teacher" / "profile.json")
    entry = ledger_entry(1, accepted=False, verdicts=rejected_try()["verdicts"], meets_final=False,
                         distill=Training(best_val_quality=None, epochs=0))
    profile_from_samples(latencies(2.0)).save(tmp_path / entry.dir / "profile.json")
    append_entry(tmp_path / "ledger.jsonl", entry)
    budget = {"statistic": "p50", "teacher_ms": 4.0, "min_speedup": 2.0, "max_ms": None, "final_ms": 2.0,
              "metric": {"name": "accuracy", "scale": 100.0, "unit": "%", "higher_is_better": True},
              "teacher_quality": 97.0, "quality_limit": 96.0, "final": "p50 speedup >= 2.00x"}
    write_reports(tmp_path, parse_config(tiny_config()), budget, teacher, [entry], "step 1 rejected")
    assert code_of(["report", str(tmp_path)]) == ExitCode.UNDECIDED
    assert "| step 1 try 1 |" in capsys.readouterr().out
