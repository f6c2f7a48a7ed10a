"""``deploy/device_runner/steps.py``: the manifest's commands, filled in and run with the runner's own modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spiralprune.deploy import device_runner
from spiralprune.deploy.device_runner.steps import RUNNER_ROOT, fill, step_env


def test_placeholders_are_filled() -> None:
    argv = ["{python}", "--engine={engine}", "--threads", "{cores}", "--saveEngine={engine}"]
    assert fill(argv, {"python": "/usr/bin/python3", "engine": "/c/e", "cores": "6"}) == [
        "/usr/bin/python3", "--engine=/c/e", "--threads", "6", "--saveEngine=/c/e"]


def test_steps_import_the_runner_they_run_under(tmp_path) -> None:
    assert (RUNNER_ROOT / "spiralprune" / "__init__.py").is_file()
    env = step_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(RUNNER_ROOT)
    where = subprocess.run([sys.executable, "-c", "import spiralprune.deploy.device_runner as d; print(d.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve() == Path(device_runner.__file__).resolve()
