"""A JSON job run under ``torchrun``: the one launcher of the run's multi-process work.

Training (``spiralprune.pipeline.distill.ddp``) and the criteria's scoring (``spiralprune.pipeline.scoring``)
write a job file, run a module of ours on it in ``distributed.processes`` processes per node, and read back
what its rank 0 wrote. Nothing pickled crosses: the processes rebuild every object from the file. A job's
own bad input is printed by the process as one prefixed line and comes back as that ``InputError``; a
process that dies is one line naming it and torchrun's log.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DistributedConfig

Job = TypeVar("Job", bound=BaseModel)
LOG = "torchrun.log"  # beside the job file: torchrun's and every process's output


def run_torchrun(module: str, job_path: Path, distributed: DistributedConfig, *, what: str, error_prefix: str,
                 then: str = "") -> None:
    """Run ``python -m module job_path`` under ``torchrun`` with ``distributed``'s processes, nodes and
    rendezvous. torchrun's output goes to ``LOG`` beside the job; a failed job is one line: the job's own
    bad input (the line its process printed after ``error_prefix``), or which process of ``what`` died and
    how, naming that log (``then`` appended). Interrupted (Ctrl-C, SIGTERM), torchrun is asked to stop its
    processes before this returns: none is left writing."""
    if distributed.nnodes == 1:
        rendezvous = ["--standalone"]
    else:  # static rendezvous: node 0 at rdzv_endpoint, every node told its rank
        rendezvous = [f"--nnodes={distributed.nnodes}", f"--node-rank={distributed.node_rank}",
                      f"--rdzv-endpoint={distributed.rdzv_endpoint}"]
    command = [
        sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc-per-node={distributed.processes}",
        "-m", module, str(job_path),
    ]  # fmt: skip
    log = job_path.with_name(LOG)
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            returncode = process.wait()
        except BaseException:
            process.send_signal(signal.SIGTERM)  # torchrun stops its workers (SIGKILL would orphan them)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    text = log.read_text(errors="replace")
    user_errors = [line.split(error_prefix, 1)[1] for line in text.splitlines() if error_prefix in line]
    if user_errors:
        raise InputError(user_errors[0])
    if returncode != 0:
        raise _failure(text, returncode, log, what, then)


def _failure(text: str, returncode: int, log: Path, what: str, then: str) -> Exception:
    """One line for a failed torchrun: the first process that failed (torchrun's "Root Cause") and how.
    A process killed by a signal (the kernel's OOM killer, an operator) is the environment's doing, bad
    input (exit 2); one that exited with an error is an internal error, its traceback in ``log``."""
    cause = text.rpartition("Root Cause")[2]
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", cause, re.MULTILINE)
    code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)", cause, re.MULTILINE)
    who = f"rank {rank.group(1)}" if rank else "torchrun"
    exitcode = int(code.group(1)) if code else returncode
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
        return InputError(f"{what} failed: {who} was killed by {name}; torchrun's output is in {log}{then}")
    return RuntimeError(f"{what} failed: {who} exited with {exitcode}; torchrun's output and its traceback are in "
                        f"{log}{then}")


def read_job(path: Path, job_type: type[Job], what: str) -> Job:
    """The ``what`` (``distillation job``) file at ``path``, validated as ``job_type``; what is wrong is one line."""
    try:
        return job_type.model_validate_json(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InputError(f"{what} {path}: {where}: {error['msg']}") from None


def job_main(argv: list[str] | None, prog: str, description: str, run: Callable[[Path], object],
             error_prefix: str) -> int:
    """A job module's ``main``: ``run`` the job file named on the command line; its bad input is one line
    after ``error_prefix`` on stderr (what ``run_torchrun`` reads back) and exit 2."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("job", type=Path, help="JSON job file")
    args = parser.parse_args(argv)
    try:
        run(args.job)
    except InputError as exc:
        print(f"{error_prefix}{exc}", file=sys.stderr)
        return 2
    return 0
