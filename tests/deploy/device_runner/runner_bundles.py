"""Bundles for a CPU target, and the shipped runner run from one in a real subprocess (tests of ``deploy/device_runner/``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spiralprune.deploy.bundle import RUNNER, RUNNER_DIR, Bundle
from spiralprune.deploy.target_profiles import parse_target

FIXTURES = Path(__file__).parents[2] / "fixtures"
JETSON = FIXTURES / "jetson"


def cpu_target(**overrides: object):
    data = {
        "name": "cpu-test", "backend": "ort-cpu", "ssh": {"host": "localhost"},
        "measure": {"threads": 1, "profile": {"warmup_s": 0.02, "block_s": 0.01, "min_rounds": 5,
                                             "min_duration_s": 0.1, "max_duration_s": 0.5}},
        "budget": {"latency": {"max_ms": 100.0}},
    }
    data.update(overrides)
    return parse_target(data, "test")


def run_runner(bundle: Bundle, cache: Path, python: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m spiralprune.deploy.device_runner run`` in the bundle folder with only its ``runner/`` on PYTHONPATH."""
    argv = [*(python or [sys.executable]), "-m", RUNNER, "run", "--bundle", str(bundle.root),
            "--manifest-sha256", bundle.manifest_sha256, "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(bundle.root / RUNNER_DIR)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=bundle.root, env=env)
