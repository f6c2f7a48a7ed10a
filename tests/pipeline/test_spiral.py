"""The spiral end to end on a tiny real problem: real training, Torch-Pruning, ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from size_limits import IMPOSSIBLE_SIZE, size_failures

from spiralprune import __version__ as spiral_version
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.distill.checkpoint import CHECKPOINT_NAME
from spiralprune.pipeline.ledger import read_ledger
from spiralprune.pipeline.passes.steps.plan_search import MAX_MEASURED
from spiralprune.pipeline.passes.steps.stage import step_reduction
from tests.pipeline.compare.html_checks import inline_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def own_kernels_cache(tmp_path_factory: pytest.TempPathFactory):
    """These runs time their operators afresh: with the session's table (tests/conftest.py), timed by the files
    before this one, a step found no plan removing a channel and another screened a single candidate in the
    full suite only (2026-12-07), while this file alone passed 20 of 20. Only this file, whose assertions read
    the plan search, gets its own: every other file shares the session's table, which saves timing it again."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPIRAL_KERNELS_CACHE", str(tmp_path_factory.mktemp("spiral-kernels-cache")))
        yield


def spiral(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "spiralprune.pipeline.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def compiled_keys(out: Path) -> set[str]:
    """The keys of the compiled files a run folder holds (ONNX Runtime's optimized graph and its facts each)."""
    names = [p.name for p in (out / "compiled").iterdir()]
    assert sorted(names) == sorted(f"{n.split('.')[0]}{s}" for n in names if n.endswith(".onnx") for s in (".onnx", ".json"))
    return {n.split(".")[0] for n in names}


def teacher_engine_key(out: Path) -> str:
    """The key of the compiled file the teacher's profile ran from."""
    return json.loads((out / "teacher" / "profile.json").read_text())["runner_settings"]["engine_key"]


def report_teacher_ms(out: Path) -> float:
    return json.loads((out / "teacher" / "summary.json").read_text())["statistic_ms"]


def assert_result_explained(out: Path, capsys) -> None:
    """The result's step measured its candidate by layer between the judged rounds, and the run report
    shows that explanation (the section ``spiralprune compare`` and the gate share) with the chosen plan's
    per-layer prediction beside the measured times; ``spiralprune report`` renders it again."""
    report = json.loads((out / "report.json").read_text())
    (step,) = report["steps"]
    section = report["layers"]
    assert section["model"] == "step 1 try 1" and section["explanation"]["rounds"] >= 6
    measured = {r["name"] for r in section["explanation"]["layers"]}
    assert {"stem.0", "layer4.0.conv2", "fc"} <= measured  # named by module on every backend
    predicted = {r["name"]: r for r in section["predicted"]}
    assert {"stem.0", "layer4.0.conv2", "fc"} <= set(predicted) <= set(step["predicted_layers"])
    assert all(r["ratio"] == pytest.approx(r["measured_ms"] / r["predicted_ms"]) for r in predicted.values()
               if r["predicted_ms"] > 0)
    assert predicted["layer4.0.conv2"]["predicted_ms"] > 0
    md = (out / "report.md").read_text()
    assert "### Where the time of step 1 try 1 goes" in md and "| layer | predicted ms | measured ms |" in md
    html = (out / "report.html").read_text()
    assert "<h2>Where the time of step 1 try 1 goes</h2>" in html
    assert len(inline_images(html)) == 3  # the layers' shares beside the latency distributions and the front
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "### Where the time of step 1 try 1 goes" in capsys.readouterr().out


@pytest.mark.parametrize("allocation", ScheduleConfig.model_fields["allocation"].annotation.__args__)
def test_tiny_spiral_end_to_end(write_config, tmp_path: Path, capsys, allocation: str):
    out = tmp_path / "run"
    config = write_config(schedule={"allocation": allocation})
    assert main(["run", str(config), "--out", str(out)]) == 0
    entries = read_ledger(out / "ledger.jsonl")
    assert len(entries) == 1 and entries[0].accepted
    # Every candidate plan has a predicted latency; only the measured ones have a measured one.
    plans = entries[0].plans
    assert entries[0].allocation == allocation and entries[0].predicted_ms > 0
    assert all(c["predicted_ms"] > 0 for c in plans)
    measured = sum(c["ms"] is not None for c in plans)
    assert 1 <= measured <= MAX_MEASURED and measured < len(plans)
    # One measuring session for the try: the teacher loaded once for every plan measured, from the compiled file
    # its own profile left in the run's cache (steps 1's current model is the teacher); each candidate compiled.
    # When the try ended, the plans' compiled files (a graph and its facts each) were evicted: only the
    # teacher's stays, the one file read again (the accepted model is compiled when a next step measures it).
    compiles = entries[0].compiles
    assert compiles == {"built": measured, "from_cache": 1, "kept": measured - 1, "evicted": 2 * measured,
                        "evicted_mb": compiles["evicted_mb"]}
    assert compiled_keys(out) == {teacher_engine_key(out)}
    # The candidate was measured in rounds beside the teacher; the judge decided the step and final budgets.
    entry = entries[0]
    step_verdict, final_verdict = entry.verdicts
    assert step_verdict["question"]["reference"] == "teacher" and step_verdict["outcome"] == "meets"
    assert step_verdict["question"]["limit"] == pytest.approx(entry.goal_ms / report_teacher_ms(out))
    assert final_verdict["question"]["name"] == "final max_ms" and entry.meets_final
    low, high = entry.speedup_ci
    assert low <= entry.speedup <= high
    step = out / entries[0].dir
    for name in ("model/model.safetensors", "model/spiral.json", "model.onnx", "profile.json", "eval.json", "plan.json"):
        assert (step / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and report["met_budget"] and report["spiral"] == spiral_version
    assert entries[0].spiral == spiral_version and json.loads((step / "profile.json").read_text())["fingerprint"]["spiral"] == spiral_version
    assert report["steps"][0]["parity"]["passed"]
    assert entries[0].params < report["teacher"]["params"]
    assert "| step 1 try 1 |" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "spiral steps" in printed and "accepted" in printed
    assert_result_explained(out, capsys)
    # A finished run resumed does nothing again.
    before = (out / "ledger.jsonl").read_bytes(), (step / "model.onnx").stat().st_mtime_ns
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 0
    assert ((out / "ledger.jsonl").read_bytes(), (step / "model.onnx").stat().st_mtime_ns) == before


def test_a_torch_target_measures_the_live_modules(write_config, tmp_path: Path, capsys):
    """``target.backend: torch``: the teacher, the current model and every candidate are timed as
    modules (the ONNX export still gives their inputs and is what parity checks and ships)."""
    out = tmp_path / "run"
    config = write_config(target={"backend": "torch", "threads": 1,
                                  "profile": {"warmup_s": 0.05, "block_s": 0.005, "min_rounds": 6,
                                              "min_duration_s": 0.05, "max_duration_s": 0.5}})
    assert main(["run", str(config), "--out", str(out)]) == 0
    (entry,) = read_ledger(out / "ledger.jsonl")
    assert entry.accepted and entry.verdicts[0]["outcome"] == "meets"
    for profile in (out / "teacher" / "profile.json", out / entry.dir / "profile.json"):
        data = json.loads(profile.read_text())
        assert data["backend"] == "torch" and data["runner_settings"]["mode"] == "eager"
        assert data["runner_settings"]["device"] == "cpu"
    assert (out / entry.dir / "model.onnx").is_file()
    assert_result_explained(out, capsys)


def test_impossible_budget_exits_1_with_best_attempt(write_config, tmp_path: Path, capsys):
    out = tmp_path / "run"
    config = write_config(budget={"latency": {"max_ms": 1e-6}}, schedule={"max_steps": 1, "patience": 0, "stop_at_floor": False})
    assert main(["run", str(config), "--out", str(out)]) == 1
    captured = capsys.readouterr().out
    assert "no step met the budget" in captured
    report = json.loads((out / "report.json").read_text())
    assert not report["met_budget"] and len(report["steps"]) == 1
    # The step may meet its own (relative) budget, but never the final 1e-6 ms one.
    step = report["steps"][0]
    assert step["verdicts"][-1]["outcome"] == "misses" and not step["meets_final"]
    assert report["message"].startswith(("stopped after max_steps=1", "step 1 rejected 1 times"))


def test_a_budget_below_the_pruning_floor_stops_before_step_1_saying_what_would_help(write_config, tmp_path: Path, capsys):
    out = tmp_path / "run"
    config = write_config(budget={"latency": {"max_ms": 1e-6}})
    assert main(["run", str(config), "--out", str(out)]) == 1
    assert read_ledger(out / "ledger.jsonl") == []
    message = json.loads((out / "report.json").read_text())["message"]
    assert message.startswith("the final budget (0.000 ms) is below what pruning can reach on ort-cpu at batch 1: ")
    assert "with every prunable group at its fewest channels the model is predicted at " in message
    assert "no step was taken. What would help: a larger batch, lower precision" in message
    assert " ".join(message.split()) in " ".join(capsys.readouterr().out.split())  # the console wraps it


def test_a_try_the_judge_rejects_spends_no_epochs(write_config, tmp_path: Path, capsys):
    """A plan's latency is judged before it is distilled: a step budget no plan can reach trains nothing."""
    out = tmp_path / "run"
    config = write_config(budget={"latency": {"max_ms": 1e-6}}, schedule={"initial_reduction": 0.99, "max_steps": 1, "patience": 1,
                                                             "stop_at_floor": False},
                          distill={"epochs": 2})
    assert main(["run", str(config), "--out", str(out)]) == 1
    entries = read_ledger(out / "ledger.jsonl")
    assert [(e.step, e.attempt) for e in entries] == [(1, 1), (1, 2)]
    for entry in entries:
        assert not entry.accepted and entry.verdicts[0]["outcome"] != "meets"
        assert entry.distill.model_dump() == {"best_val_quality": None, "epochs": 0, "recovery_epochs": 0}
        assert entry.reason.startswith("step budget:")
        assert (out / entry.dir / "model.onnx").is_file()  # the untrained candidate, evaluated
    assert "not distilled: the judge rejects its latency" in " ".join(capsys.readouterr().err.split())  # as wrapped


def test_existing_run_needs_resume(write_config, tmp_path: Path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "ledger.jsonl").write_text("")
    assert main(["run", str(write_config()), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_resume_after_sigkill_mid_step(write_config, tmp_path: Path):
    """Kill a real run while it distills step 1, then resume: the step finishes once, with the same plan."""
    out = tmp_path / "run"
    config = write_config(distill={"epochs": 3})
    process = spiral("run", str(config), "--out", str(out))
    work = out / "steps" / ".step-01-try-1"
    deadline = time.time() + 240
    # Killed once the first epoch's checkpoint is written: mid-distillation, two epochs to go.
    while not (work / "distill" / CHECKPOINT_NAME).exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the run never reached distillation"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert read_ledger(out / "ledger.jsonl") == []
    plan_before = (work / "plan.json").read_text()
    teacher_mtime = (out / "teacher" / "model" / "model.safetensors").stat().st_mtime_ns

    resumed = spiral("run", str(config), "--out", str(out), "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    entries = read_ledger(out / "ledger.jsonl")
    assert [(e.step, e.attempt) for e in entries] == [(1, 1)]
    assert (out / "steps" / "step-01-try-1" / "plan.json").read_text() == plan_before
    # The resumed try measured its plan again from the compiled files the killed one left in the run's cache,
    # then evicted all of them but the teacher's (the killed try's every measured plan among them).
    compiles = entries[0].compiles
    assert {k: compiles[k] for k in ("built", "from_cache", "kept")} == {"built": 0, "from_cache": 2, "kept": 0}
    assert compiles["evicted"] >= 2 and compiled_keys(out) == {teacher_engine_key(out)}
    assert (out / "teacher" / "model" / "model.safetensors").stat().st_mtime_ns == teacher_mtime
    assert not work.exists()


def test_the_try_meeting_the_final_budget_trains_the_recovery_in_its_schedule(write_config, tmp_path: Path):
    out = tmp_path / "run"
    config = write_config(schedule={"total_epochs": 3})
    assert main(["run", str(config), "--out", str(out)]) == 0
    (step,) = read_ledger(out / "ledger.jsonl")
    assert step.accepted and step.meets_final
    assert step.distill.epochs == 3 and step.distill.recovery_epochs == 2
    assert not (out / "steps" / "recovery").exists()


def test_a_run_short_of_its_final_budget_recovers_its_last_model(write_config, tmp_path: Path):
    """The final budget (1e-6 ms) is out of reach, so the loop ends after max_steps; its last
    accepted model gets the recovery. Whether a step is accepted at all depends on how much faster
    this machine runs the pruned model, so a run that accepted none must end without a recovery."""
    out = tmp_path / "run"
    config = write_config(budget={"latency": {"max_ms": 1e-6}}, schedule={"initial_reduction": 0.5, "patience": 3, "total_epochs": 4,
                                                             "stop_at_floor": False})
    assert main(["run", str(config), "--out", str(out)]) == 1
    entries = read_ledger(out / "ledger.jsonl")
    if not any(e.accepted for e in entries):
        assert all(e.kind != "recovery" for e in entries) and not (out / "steps" / "recovery").exists()
        return
    *_, step, recovery = entries
    assert step.accepted and not step.meets_final and step.distill.recovery_epochs == 0
    assert recovery.kind == "recovery" and recovery.dir == "steps/recovery"
    assert sum(e.distill.epochs for e in entries) == 4
    # The recovered model keeps the step's structure, so its latency verdicts are the step's.
    assert recovery.verdicts == step.verdicts and recovery.params == step.params
    assert recovery.accepted == (recovery.quality >= step.quality)
    report = json.loads((out / "report.json").read_text())
    assert "final recovery" in report["message"] and "| final recovery |" in (out / "report.md").read_text()
    before = (out / "ledger.jsonl").read_bytes()
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 1
    assert (out / "ledger.jsonl").read_bytes() == before


def test_tries_train_only_what_the_budget_leaves_after_the_recovery_share(write_config, tmp_path: Path):
    out = tmp_path / "run"
    config = write_config(schedule={"total_epochs": 3, "final_epochs": 2}, distill={"epochs": 5, "lr": 0.02})
    assert main(["run", str(config), "--out", str(out)]) == 0
    (step,) = read_ledger(out / "ledger.jsonl")
    assert (step.distill.epochs, step.distill.recovery_epochs) == (3, 2)


def test_a_final_try_rejected_on_accuracy_spends_the_recovery_share_with_it(write_config, tmp_path: Path):
    """Its plan meets the final budget, so it trains its recovery epochs too, then misses the floor:
    nothing is left of the training budget, and the run says so. Every size limit (tests/size_limits.py)
    is judged on the try's ONNX file too."""
    out = tmp_path / "run"
    config = write_config(budget={"accuracy": {"max_drop": None, "min": 100.0}, "size": IMPOSSIBLE_SIZE},
                          schedule={"total_epochs": 3, "final_epochs": 1, "max_steps": 5, "patience": 5})
    assert main(["run", str(config), "--out", str(out)]) == 1
    entries = read_ledger(out / "ledger.jsonl")
    assert [(e.attempt, e.accepted, e.distill.epochs) for e in entries] == [(1, False, 3)]
    assert entries[0].reason.startswith("accuracy") and "recovery" not in {e.kind for e in entries}
    assert len(size_failures(entries[0].checks)) == len(IMPOSSIBLE_SIZE)
    report = json.loads((out / "report.json").read_text())
    assert report["message"].startswith("the tries spent the training budget (total_epochs=3, 1 kept")


def test_recovery_share_must_leave_epochs_for_the_steps(write_config, tmp_path: Path, capsys):
    config = write_config(schedule={"total_epochs": 3, "final_epochs": 3})
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "final_epochs (3) must be less than total_epochs (3)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_int8_stage_is_judged_beside_the_float_result_and_the_teacher(write_config, tmp_path: Path, capsys):
    """``quantize:`` after the steps: a limit of 0.01x over the float model is always granted, so the
    INT8 model becomes the result when its accuracy holds; the float model stays otherwise."""
    out = tmp_path / "run"
    config = write_config(quantize={"calibration_batches": 2, "batch_size": 16, "budget": {
        "latency": {"min_speedup": 0.01}, "metric": {"max_drop": 100}}})
    assert main(["run", str(config), "--out", str(out)]) == 0
    step, quantized = read_ledger(out / "ledger.jsonl")
    assert quantized.kind == "quantize" and quantized.quantize_of == step.dir
    assert quantized.accepted and quantized.verdicts[0]["question"]["name"] == "int8 vs float"
    assert quantized.verdicts[1]["question"]["subject"] == "int8" and quantized.meets_final
    assert (out / "steps" / "quantize" / "model.onnx").is_file() and quantized.distill.epochs == 0
    report = json.loads((out / "report.json").read_text())
    assert report["best"]["kind"] == "quantize" and "INT8 quantization accepted" in report["message"]
    assert "| INT8 quantization |" in (out / "report.md").read_text()
    # The run ends with the compiled files of the teacher and of its result, the INT8 model, and no other.
    compiles = quantized.quantize["compiles"]
    assert {k: compiles[k] for k in ("built", "from_cache")} == {"built": 2, "from_cache": 1} and compiles["evicted"] == 2
    assert len(compiled_keys(out)) == 2 and teacher_engine_key(out) in compiled_keys(out)
    before = (out / "ledger.jsonl").read_bytes()
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 0
    assert (out / "ledger.jsonl").read_bytes() == before


def test_a_rejected_int8_stage_leaves_the_float_model(write_config, tmp_path: Path):
    out = tmp_path / "run"
    config = write_config(quantize={"calibration_batches": 2, "batch_size": 16, "budget": {"latency": {"min_speedup": 100}}})
    assert main(["run", str(config), "--out", str(out)]) == 0
    step, quantized = read_ledger(out / "ledger.jsonl")
    assert not quantized.accepted and quantized.reason.startswith("int8 vs float: misses")
    report = json.loads((out / "report.json").read_text())
    assert report["best"]["dir"] == step.dir and report["met_budget"]


def test_the_int8_stage_needs_an_onnx_runtime_target(write_config, tmp_path: Path, capsys):
    config = write_config(target={"backend": "torch"}, quantize={})
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "quantize: INT8 QDQ models run on ort-cpu, ort-cuda, ort-trt, not 'torch'" in capsys.readouterr().err


def test_a_step_aims_at_the_final_budget_by_default_and_backs_off_from_it() -> None:
    final = ScheduleConfig()
    assert final.initial_reduction == "final"
    assert step_reduction(final, 1, 1, current_ms=4.0, final_ms=1.0) == pytest.approx(0.75)  # straight to 1 ms
    assert step_reduction(final, 2, 1, current_ms=2.0, final_ms=1.0) == pytest.approx(0.5)  # again, from where it is
    assert step_reduction(final, 1, 2, current_ms=4.0, final_ms=1.0) == pytest.approx(0.75 * final.backoff)
    netadapt = ScheduleConfig(initial_reduction=0.2, decay=0.5, backoff=0.5)
    assert step_reduction(netadapt, 3, 2, current_ms=4.0, final_ms=1.0) == pytest.approx(0.2 * 0.25 * 0.5)
    with pytest.raises(ValueError):
        ScheduleConfig(initial_reduction="half")
    with pytest.raises(ValueError):
        ScheduleConfig(initial_reduction=1.0)


def test_an_int8_stage_that_loses_too_much_recovers_from_the_teacher(write_config, tmp_path: Path):
    """The hostile depthwise network (tests/depthwise_net.py) as the teacher: its pruned, distilled result
    loses tens of points to per-tensor INT8 and the fallback is off, so the stage trains it through
    simulated INT8 from the teacher. The recovered INT8 model is judged when it is more accurate, the post-training one otherwise
    (which one depends on the plan the step measured best on this machine today); either way the drop is
    counted against the float result's accuracy."""
    out = tmp_path / "run"
    config = write_config(model="depthwise_net:hostile", teacher_training=None, trust_model_code=True,
                          distill={"epochs": 2, "lr": 0.005},
                          quantize={"per_channel": False, "budget": {"latency": {"min_speedup": 0.01}}, "max_float_nodes": 0})
    assert main(["run", str(config), "--out", str(out)]) == 0
    step, quantized = read_ledger(out / "ledger.jsonl")
    recovery = quantized.quantize["recovery"]
    assert recovery["epochs"] == 5 and recovery["before"] < 100 * step.quality - 1  # the trigger
    assert quantized.quantize["accuracy"]["float"] == pytest.approx(100 * step.quality)
    judged = recovery["accuracy"] if recovery["kept"] else recovery["before"]
    assert quantized.quality == pytest.approx(judged / 100)
    assert quantized.accepted == (100 * step.quality - judged <= 1.0)
    assert "quantization-aware recovery (5 epochs at lr 0.001)" in quantized.reason
    assert sorted(p.name for p in (out / "steps" / "quantize").iterdir()) == sorted(
        ["model.onnx", "profile.json", *(["recovered.onnx"] if recovery["kept"] else [])])


def test_a_throughput_budget_is_judged_on_the_run_batch(write_config, tmp_path: Path):
    """``budget.min_throughput``: 2 items/s at batch 1 is a call within 500 ms, met by any candidate here."""
    out = tmp_path / "run"
    config = write_config(budget={"latency": {"max_ms": None, "min_throughput": 2.0}})
    assert main(["run", str(config), "--out", str(out)]) == 0
    [entry] = read_ledger(out / "ledger.jsonl")
    final = [v for v in entry.verdicts if v["question"]["name"] == "final min_throughput"]
    assert entry.accepted and entry.meets_final and len(final) == 1
    assert final[0]["question"]["limit"] == pytest.approx(500.0) and final[0]["outcome"] == "meets"
    report = json.loads((out / "report.json").read_text())
    assert report["budget"]["final"].startswith("throughput >= 2 items/s at batch 1: p50 <= 500.000 ms")


def test_a_run_folder_of_ledger_version_2_reports_and_resumes(write_config, tmp_path: Path, capsys):
    """A run killed before its INT8 pass by a spiral that wrote one flat record for every kind (ledger
    version 2): its try is read as a try, the resumed run quantizes that model and leaves the old line
    as it was, and ``spiralprune report`` renders the folder."""
    out = tmp_path / "run"
    config = write_config(quantize={"calibration_batches": 2, "batch_size": 16, "budget": {
        "latency": {"min_speedup": 0.01}, "metric": {"max_drop": 100}}})
    assert main(["run", str(config), "--out", str(out)]) == 0
    step = json.loads((out / "ledger.jsonl").read_text().splitlines()[0])
    flat = {"message": None, "quantize_of": None, "quantize": None}  # what version 2 wrote on a try's line
    old = json.dumps({**step, **flat, "version": 2}, sort_keys=True) + "\n"
    (out / "ledger.jsonl").write_text(old)
    shutil.rmtree(out / "steps" / "quantize")
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 0
    first, added = (out / "ledger.jsonl").read_text().splitlines(keepends=True)
    assert first == old and json.loads(added)["version"] == 4
    tried, quantized = read_ledger(out / "ledger.jsonl")
    assert (tried.kind, tried.dir, tried.compiles) == ("step", step["dir"], step["compiles"])
    assert quantized.kind == "quantize" and quantized.quantize_of == tried.dir and quantized.accepted
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "step 1 try 1" in printed and "INT8 quantization" in printed
