"""Ctrl-C and SIGTERM during a real ``spiralprune run``: one line, exit 130 / 143, the run resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spiralprune.pipeline.cli import main
from spiralprune.pipeline.ledger import read_ledger

pytestmark = pytest.mark.slow


def start_run(config: Path, out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "spiralprune.pipeline.cli", "run", str(config), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 240
    while not (out / "steps" / ".step-01-try-1" / "distill").exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the run never reached distillation"
        time.sleep(0.1)
    return process


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_step_is_one_line_and_the_run_resumes(sig, code, word, write_config, tmp_path: Path, capsys):
    out = tmp_path / "run"
    config = write_config(distill={"epochs": 3})
    process = start_run(config, out)
    process.send_signal(sig)
    process.send_signal(sig)  # a second one while the line is printed changes nothing
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (f"spiralprune: {word}: finished attempts are kept in {out}/ledger.jsonl; continue with: "
                    f"spiralprune run {config} --out {out} --resume")
    assert "Traceback" not in stderr
    assert read_ledger(out / "ledger.jsonl") == []
    assert not [p for p in out.rglob("*.tmp")]  # nothing half-written
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 0
    assert [(e.step, e.attempt) for e in read_ledger(out / "ledger.jsonl")] == [(1, 1)]
