"""Running commands on the device: the manifest's build and profile commands, and quiet queries of tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import spiralprune

from .errors import ERROR_MARK, NO_SPACE, DeviceError

# The folder that holds this runner's ``spiralprune`` package: the bundle's ``runner/`` on a device.
RUNNER_ROOT = Path(spiralprune.__file__).resolve().parents[1]


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    """The manifest's command with ``{python}``, ``{engine}``, ``{timing_cache}``, ``{times}`` filled in."""
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def step_env() -> dict[str, str]:
    """The environment of a command: this runner's own folder first on ``PYTHONPATH``, so that the
    ONNX Runtime steps (``{python} -m spiralprune.deploy.device_runner ort-build``) run the shipped modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(RUNNER_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_step(kind: str, argv: list[str], cwd: Path, log: Path, timeout_s: float) -> str:
    """Run one build or profile command; its output goes to ``log``. Failures become DeviceErrors."""
    try:
        done = subprocess.run(argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout_s, check=False, env=step_env())
    except FileNotFoundError:
        raise DeviceError("missing-tool", f"{argv[0]} not found on the device") from None
    except subprocess.TimeoutExpired:
        raise DeviceError(kind, f"{Path(argv[0]).name} did not finish within {timeout_s:.0f} s") from None
    output = done.stdout.decode(errors="replace")
    log.write_text(" ".join(argv) + "\n" + output)
    if done.returncode == 0:
        return output
    if NO_SPACE in output:
        raise DeviceError("disk-full", f"{Path(argv[0]).name}: {NO_SPACE}")
    nested = [line for line in output.splitlines() if line.startswith(ERROR_MARK)]
    if nested:
        nested_kind, _, message = nested[-1][len(ERROR_MARK):].strip().partition(": ")
        raise DeviceError(nested_kind, message)
    errors = [line.strip() for line in output.splitlines() if "[E]" in line]
    detail = " | ".join(errors[-3:]) or " | ".join(output.strip().splitlines()[-3:]) or f"exit {done.returncode}"
    raise DeviceError(kind, f"{Path(argv[0]).name} exited with {done.returncode}: {detail}")


def run_quiet(argv: list[str], timeout: float = 20) -> tuple[int, str]:
    """Exit status and output of a query (``nvpmodel -q``, ``trtexec --help``); -1 when it could not run."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return done.returncode, done.stdout.decode(errors="replace")
