"""Node 0's announcements to the other nodes of a run: the run folder's ``nodes/``, which every node sees.

A run on several nodes is planned, measured and recorded by node 0 alone (``spiralprune run``); every
other node runs a follower (``spiralprune join RUN --node-rank K``) that takes part in node 0's torchrun
jobs and in nothing else. The run folder (and node 0's working directory, where the job's relative paths
and the user's ``package.module:factory`` are found) is on a filesystem every node sees at the same path,
so a job needs no transport of its own: node 0 writes the job's JSON file as it does on one node,
announces it here, then launches its own torchrun; each follower launches torchrun for the same module
and job file with its node rank (``spiralprune.pipeline.torchrun.follow``), and torchrun's rendezvous at
node 0's endpoint makes them one job. When node 0's run ends, however it ends, it announces the end, and
the followers stop: with one line when node 0's run failed.

    job.json      the job node 0 runs now (``Announcement``); replaced by the next, a follower runs each id once
    end.json      the run's end (``Ending``): node 0's one line when it failed
    node-K.json   the job node K's follower picked up last: node 0 names the nodes that never came
    node-K.log    torchrun's output of node K's latest job

One announcement at a time is enough: node 0 cannot go past a job that every node has not joined. Every
file is written whole (``spiralprune.core.atomic``): a follower polling the folder reads a job or none.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from spiralprune.core.atomic import write_json
from spiralprune.core.errors import InputError
from spiralprune.deploy.strict import Strict
from spiralprune.pipeline.config import DistributedConfig

if TYPE_CHECKING:
    from spiralprune.pipeline.run_folder import RunFolder

Record = TypeVar("Record", bound=BaseModel)


class Announcement(Strict):
    """A torchrun job every node runs: ``python -m module job`` (a JSON job file in the run folder)."""

    id: str  # node 0's session and the job's number: the job's rendezvous id, unique across resumed runs
    number: int  # the job's number in node 0's session, for people
    # spiral's own job modules only: a follower runs no other code a file in the run folder names
    module: Literal["spiralprune.pipeline.distill.ddp", "spiralprune.pipeline.scoring"]
    job: Path
    cwd: Path  # node 0's working directory: where a job's relative paths and the user's factories are found
    what: str  # "distributed training", as node 0's error lines say
    distributed: DistributedConfig  # node 0's: nnodes, the endpoint, the join timeout, processes per node


class Ending(Strict):
    failed: str | None = None  # node 0's one line when its run failed


class Pickup(Strict):
    job: str  # the Announcement.id a follower launched


class Board:
    """``RUN/nodes/``: node 0 writes the jobs and the end, each follower its pickups and its torchrun log."""

    JOB, END = "job.json", "end.json"

    def __init__(self, root: Path):
        self.root = Path(root)
        self._session = uuid.uuid4().hex[:12]
        self._count = 0

    # node 0
    def announce(self, module: str, job: Path, distributed: DistributedConfig, what: str) -> Announcement:
        self._count += 1
        announcement = Announcement(id=f"{self._session}-{self._count}", number=self._count, module=module,
                                    job=job, cwd=Path.cwd(), what=what, distributed=distributed)
        write_json(self.root / self.JOB, announcement.model_dump(mode="json"))
        return announcement

    def absent(self, announcement: Announcement) -> list[int]:
        """The nodes whose follower has not picked ``announcement`` up."""
        return [rank for rank in range(1, announcement.distributed.nnodes)
                if (pickup := self._read(self._pickup(rank), Pickup)) is None or pickup.job != announcement.id]

    def end(self, failed: str | None) -> None:
        write_json(self.root / self.END, Ending(failed=failed).model_dump(mode="json"))

    def clear(self) -> None:
        """Forget an earlier node 0's job and end (a resumed run's): they would stop this run's followers."""
        for name in (self.JOB, self.END):
            (self.root / name).unlink(missing_ok=True)

    # a follower
    def current(self) -> Announcement | None:
        return self._read(self.root / self.JOB, Announcement)

    def ending(self) -> Ending | None:
        return self._read(self.root / self.END, Ending)

    def failed(self) -> str | None:
        """Node 0's line when its run has ended in failure (no node 0 will come to a job any more)."""
        ending = self.ending()
        return None if ending is None else ending.failed

    def pick_up(self, announcement: Announcement, rank: int) -> None:
        write_json(self._pickup(rank), Pickup(job=announcement.id).model_dump(mode="json"))

    def log(self, rank: int) -> Path:
        return self.root / f"node-{rank}.log"

    def _pickup(self, rank: int) -> Path:
        return self.root / f"node-{rank}.json"

    def _read(self, path: Path, record: type[Record]) -> Record | None:
        try:
            return record.model_validate_json(path.read_text())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        except ValidationError as exc:
            raise InputError(f"{path} is not a spiralprune node announcement: {exc.errors()[0]['msg']}") from None


@contextmanager
def announcing(folder: RunFolder, distributed: DistributedConfig) -> Iterator[Board | None]:
    """Node 0's board for the run in ``folder`` (None on one node): an earlier run's announcements cleared
    first, the end announced however the run ends, so that no follower waits for a node 0 that is gone.
    A run that fails before its folder is a run folder announces nothing (no follower can have joined:
    ``spiralprune join`` refuses a folder without the run's config). A run started on another node is
    refused before it touches the board: it would plan a spiral of its own and end node 0's."""
    if distributed.node_rank > 0:
        raise InputError(f"distributed.node_rank {distributed.node_rank}: spiralprune run is node 0's; on this node "
                         f"run spiralprune join {folder.root} --node-rank {distributed.node_rank} (the run folder on a "
                         "filesystem every node sees at the same path)")
    if distributed.nnodes == 1:
        yield None
        return
    board = Board(folder.nodes)
    board.clear()
    try:
        yield board
    except BaseException as exc:
        if folder.config.exists():
            board.end(_failure_line(exc))
        raise
    board.end(None)


def _failure_line(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "it was interrupted or terminated"
    return f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())} (its traceback is on node 0)"
