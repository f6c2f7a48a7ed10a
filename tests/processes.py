"""The processes of a torchrun job a test runs, found in /proc, and a call's exception handed across threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def torchrun_worker(job_path: Path, local_rank: int) -> int | None:
    """The pid of the torchrun worker of ``local_rank`` running ``job_path`` (found in /proc), None before it starts."""
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(job_path).encode() in command and b"torch.distributed.run" not in command \
                and f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(proc.name)
    return None


def raised(call: Callable[[], object]) -> list[BaseException]:
    """What ``call`` raised, if anything (for a test thread to hand to the test)."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return [exc]
    return []
