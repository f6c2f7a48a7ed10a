"""``ledger.jsonl``: one JSON line per attempted spiral step, appended atomically.

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced, so a run
killed mid-write leaves at most one truncated last line; ``read_ledger`` drops it (and
``repair_ledger`` removes it) so a resumed run never mistakes it for a finished step.

Every line records the ledger ``version`` it was written in; a line of a newer version than this
spiral reads is refused with one line rather than misread (lines without one are version 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deploy.errors import InputError
from deploy.validation import contained

MAX_LINE_BYTES = 1 << 20  # a step's line takes a few kB
VERSION = 1


def append_entry(path: Path, entry: dict[str, Any]) -> None:
    line = (json.dumps({**entry, "version": VERSION}, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a final line without its newline (a killed write) is ignored.

    A line that is not a JSON object, is longer than ``MAX_LINE_BYTES`` or names a step folder
    (``dir``) outside the run folder is refused with an InputError.
    """
    if not path.exists():
        return []
    entries = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{path}: line {number} is longer than {MAX_LINE_BYTES >> 10} KiB")
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: line {number} is not JSON ({exc})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("dir", ""), str):
                raise InputError(f"{path}: line {number} is not a ledger entry (a JSON object with a string 'dir')")
            version = entry.get("version", 1)
            if type(version) is not int or not 1 <= version <= VERSION:
                raise InputError(f"{path}: line {number} is of ledger version {version!r}; this spiral reads "
                                 f"versions 1 to {VERSION}: resume or report it with the spiral that wrote it")
            contained(path.parent, entry.get("dir", ""), f"{path}: line {number}: step folder")
            entries.append(entry)
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
