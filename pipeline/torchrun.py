"""A JSON job run under ``torchrun``: the one launcher of the run's multi-process work, on one node or several.

Training (``spiralprune.pipeline.distill.ddp``) and the criteria's scoring (``spiralprune.pipeline.scoring``)
write a job file, run a module of ours on it in ``distributed.processes`` processes per node, and read back
what its rank 0 wrote. Nothing pickled crosses: the processes rebuild every object from the file. A job's
own bad input is printed by the process as one prefixed line and comes back as that ``InputError``; a
process that dies is one line naming it and torchrun's log.

On several nodes node 0 announces each job to the other nodes' followers (``spiralprune.pipeline.nodes``,
``follow`` here) before it launches its own torchrun. They meet in torchrun's static rendezvous at node 0's
endpoint, under the job's own id: node 0's agent hosts the store there and every node keeps the rank it
is given, so global rank 0, which writes the job's results, is on node 0, where the run reads them (c10d's
dynamic rendezvous numbers the nodes in the order they arrive); the agents connect in whichever order
they start, and the port is free again for the run's next job. Its ``timeout`` is
``distributed.join_timeout_s``: a node that never joins fails node 0's job in one line naming it (exit 2)
instead of hanging the run.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DistributedConfig
from spiralprune.pipeline.nodes import Announcement, Board

Job = TypeVar("Job", bound=BaseModel)
LOG = "torchrun.log"  # beside the job file: torchrun's and every process's output
POLL_S = 0.5  # how often a follower looks for node 0's next announcement
_STORE_TIMEOUT = re.compile(r"waiting for clients\. (\d+)/(\d+) clients joined")  # static rendezvous, node 0
# A rank whose peer on another node went away mid-job: gloo's words, then NCCL's (its error text and ncclRemoteError's)
_PEER_LOST = re.compile(r"Connection (closed|reset) by peer|remote process exit")
_RANK_ERROR = re.compile(r"^\[rank\d+\]: ([\w.]+(?:Error|Exception)\b.*)$", re.MULTILINE)  # a rank's exception, last line


def run_torchrun(module: str, job_path: Path, distributed: DistributedConfig, *, what: str, error_prefix: str,
                 then: str = "", board: Board | None = None) -> None:
    """Run ``python -m module job_path`` under ``torchrun`` with ``distributed``'s processes, nodes and
    rendezvous, announced on ``board`` first with more than one node. torchrun's output goes to ``LOG``
    beside the job; a failed job is one line: the job's own bad input (the line its process printed after
    ``error_prefix``), a node that did not join or that went away during the job (exit 2: the cause is
    that node's, its follower's log says which), or which process of ``what`` died and how, naming that
    log (``then`` appended). Interrupted (Ctrl-C, SIGTERM), torchrun is asked to stop its processes before this
    returns: none is left writing."""
    announcement = None
    if distributed.nnodes > 1:
        assert board is not None  # Processes.of_run gives a run on several nodes its board
        announcement = board.announce(module, job_path, distributed, what)
    log = job_path.with_name(LOG)
    returncode = launch(torchrun_command(module, job_path, distributed, announcement), log)
    text = log.read_text(errors="replace")
    user_errors = [line.split(error_prefix, 1)[1] for line in text.splitlines() if error_prefix in line]
    if user_errors:
        raise InputError(user_errors[0])
    if returncode == 0:
        return
    if announcement is not None and (joined := _STORE_TIMEOUT.search(text)):
        raise _not_joined(announcement, board, joined, log, then)
    failure = _failure(text, returncode, log, what, then)
    errors = _RANK_ERROR.findall(text)
    if announcement is not None and isinstance(failure, RuntimeError) and errors and \
            all(_PEER_LOST.search(error) for error in errors):  # no rank here failed of itself: a node left
        raise InputError(f"{what} (job {announcement.number}) failed: another node's processes went away during it "
                         f"(their output: {board.root}/node-K.log); node 0's is in {log}{then}")
    raise failure


def torchrun_command(module: str, job_path: Path, distributed: DistributedConfig,
                     announcement: Announcement | None) -> list[str]:
    """torchrun on this node for ``distributed``: standalone on one node, else the static rendezvous of
    ``announcement``'s job (the module docstring says why that one)."""
    if announcement is None:
        rendezvous = ["--standalone"]
    else:
        rendezvous = [f"--nnodes={distributed.nnodes}", f"--node-rank={distributed.node_rank}",
                      "--rdzv-backend=static", f"--rdzv-endpoint={distributed.rdzv_endpoint}",
                      f"--rdzv-id={announcement.id}", f"--rdzv-conf=timeout={distributed.join_timeout_s}"]
    return [
        sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc-per-node={distributed.processes}",
        "-m", module, str(job_path),
    ]  # fmt: skip


def launch(command: list[str], log: Path, *, cwd: Path | None = None,
           stop: Callable[[], bool] = lambda: False) -> int:
    """Run torchrun's ``command`` with its output in ``log``, until it exits or ``stop()`` says so (asked
    every ``POLL_S``); its exit code. Interrupted, or stopped, torchrun is asked to stop its processes
    first (SIGTERM: SIGKILL would orphan them), so none is left writing."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, cwd=cwd)
        try:
            while True:
                try:
                    return process.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    if stop():
                        _stop(process)
                        return process.returncode
        except BaseException:
            _stop(process)
            raise


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _not_joined(announcement: Announcement, board: Board, joined: re.Match, log: Path, then: str) -> InputError:
    """Node 0's job whose rendezvous timed out, naming the nodes whose follower never picked it up (or,
    when every follower did, how many could not reach node 0's endpoint)."""
    distributed = announcement.distributed
    job = f"{announcement.what} (job {announcement.number}) failed"
    wait = f"within {distributed.join_timeout_s} s"
    if absent := board.absent(announcement):
        nodes, rank = ", ".join(map(str, absent)), absent[0] if len(absent) == 1 else "K"
        return InputError(f"{job}: node{'s' if len(absent) > 1 else ''} {nodes} did not join {wait} (is "
                          f"'spiralprune join {board.root.parent} --node-rank {rank}' running there?); torchrun's "
                          f"output is in {log}{then}")
    if distributed.nnodes == 2:
        who, output = "node 1 picked it up but", f"its output: {board.log(1)}"
    else:
        missing = int(joined.group(2)) - int(joined.group(1))
        who = f"nodes 1-{distributed.nnodes - 1} picked it up but {missing} of them"
        output = f"their output: {board.root}/node-K.log"
    return InputError(f"{job}: {who} did not reach {distributed.rdzv_endpoint} {wait} ({output}); node 0's is in "
                      f"{log}{then}")


def follow(board: Board, node_rank: int, processes: int | None, say: Callable[[str], None]) -> None:
    """Node ``node_rank``'s part of the run whose ``board`` this is: every job node 0 announces, in
    torchrun with this node's rank (on ``processes`` per node; None: as many as node 0's), until node
    0 announces the end. A job that fails here is one line and the next is awaited (node 0's job fails
    too, and node 0 decides what the run does); node 0's failed run is this one's ``InputError``."""
    last = None
    say(f"node {node_rank}: waiting for node 0's jobs in {board.root}")
    while (ending := board.ending()) is None:
        announcement = board.current()
        if announcement is None or announcement.id == last:
            time.sleep(POLL_S)
            continue
        last = announcement.id
        distributed = announcement.distributed
        if node_rank >= distributed.nnodes:
            raise InputError(f"--node-rank {node_rank} is not below node 0's nnodes {distributed.nnodes}")
        if not announcement.cwd.is_dir() or not (announcement.cwd / announcement.job).is_file():
            raise InputError(f"node 0's job file {announcement.cwd / announcement.job} is not on this node: the run "
                             f"folder and node 0's working directory ({announcement.cwd}) must be on a filesystem "
                             "every node sees at the same path")
        here = distributed.model_copy(update={"node_rank": node_rank, "processes": processes or distributed.processes})
        board.pick_up(announcement, node_rank)
        log = board.log(node_rank)
        say(f"job {announcement.number}: {announcement.what} on {here.processes} processes (torchrun; its output "
            f"in {log})")
        returncode = launch(torchrun_command(announcement.module, announcement.job, here, announcement), log,
                            cwd=announcement.cwd, stop=lambda: board.failed() is not None)
        say(f"job {announcement.number}: " + ("done" if returncode == 0 else f"failed here: torchrun exited with "
                                              f"{returncode}; its output is in {log}"))
    if ending.failed is not None:
        raise InputError(f"node 0's run in {board.root.parent} failed: {ending.failed}")
    say("node 0's run ended")


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
