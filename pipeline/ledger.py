"""``ledger.jsonl``: one JSON line per attempted spiral step, appended atomically.

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced, so a run
killed mid-write leaves at most one truncated last line; ``read_ledger`` drops it (and
``repair_ledger`` removes it) so a resumed run never mistakes it for a finished step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_entry(path: Path, entry: dict[str, Any]) -> None:
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a final line without its newline (a killed write) is ignored."""
    if not path.exists():
        return []
    entries = []
    for raw in path.read_bytes().split(b"\n")[:-1]:
        entries.append(json.loads(raw))
    return entries


def repair_ledger(path: Path) -> None:
    """Cut a truncated last line left by a killed write."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
