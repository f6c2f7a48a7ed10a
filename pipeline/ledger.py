"""``ledger.jsonl``: one JSON line per model a pass of the run proposed (a try, the final recovery, the
INT8 model), appended atomically.

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced, so a run
killed mid-write leaves at most one truncated last line; ``read_ledger`` drops it (and
``repair_ledger`` removes it) so a resumed run never mistakes it for a finished step.

A line is the record of the pass that wrote it (``spiralprune.pipeline.passes``: its ``kind`` names the
pass, each pass's record has its own fields on those of ``LedgerEntry``), validated when it is read
(a line that is not one is refused with one line naming the field) and stamped with the ledger
``version`` it was written in. Older lines are read in this version's shape (``migrate``), so old
run folders report and resume; a line of a newer version than this spiral reads is refused rather
than misread (lines without one are version 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spiralprune import __version__
from spiralprune.core.errors import InputError
from spiralprune.deploy.validation import contained
from spiralprune.pipeline.passes import PASSES
from spiralprune.pipeline.passes.record import VERSION, LedgerEntry

MAX_LINE_BYTES = 1 << 20  # a step's line takes a few kB
FORMER_NAMES = {"target_ms": "goal_ms", "candidates": "plans"}  # fields renamed in version 4


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older line in this version's shape. Version 1 (classification only): its accuracy is the
    quality. Version 2 (one flat record for every kind; no ``kind``: a try): the fields its kind's record
    does not have, which it wrote empty (a try's ``message``, a recovery's plan search), are left out.
    Version 3: a try's ``target_ms`` and ``candidates`` are ``goal_ms`` and ``plans`` (``VERSION``)."""
    version = data.get("version", 1)
    if version == VERSION:
        return data
    data = {**data, "version": VERSION, "kind": data.get("kind", "step")}
    if version == 1 and "accuracy" in data:
        accuracy, f1 = data.pop("accuracy"), data.pop("f1_macro", None)
        numbers = {"accuracy": accuracy, **({"f1_macro": f1} if f1 is not None else {})}
        data.update(metric="accuracy", quality=accuracy, metrics=numbers)
        if isinstance(data.get("distill"), dict) and "best_val_accuracy" in data["distill"]:
            training = dict(data["distill"])
            training["best_val_quality"] = training.pop("best_val_accuracy")
            data["distill"] = training
    for old, new in FORMER_NAMES.items():
        if old in data:
            data[new] = data.pop(old)
    record = PASSES.get(data["kind"]) if isinstance(data["kind"], str) else None
    fields = record.record.model_fields if record is not None else data  # an unknown kind is refused as it is
    return {k: v for k, v in data.items() if k in fields or v not in (None, [], {})}


def append_entry(path: Path, entry: LedgerEntry) -> None:
    stamped = entry.model_copy(update={"spiral": __version__})
    line = (json.dumps(stamped.model_dump(mode="json"), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[LedgerEntry]:
    """Every complete line; a final line without its newline (a killed write) is ignored.

    A line that is not the record of a registered pass (``spiralprune.pipeline.passes.PASSES``) of a
    version this spiral reads, is longer than ``MAX_LINE_BYTES`` or names a step folder (``dir``) outside
    the run folder is refused with an InputError.
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
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: line {number} is not JSON ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("dir", ""), str):
                raise InputError(f"{path}: line {number} is not a ledger entry (a JSON object with a string 'dir')")
            version = data.get("version", 1)
            if type(version) is not int or not 1 <= version <= VERSION:
                raise InputError(f"{path}: line {number} is of ledger version {version!r}; this spiral reads "
                                 f"versions 1 to {VERSION}: resume or report it with the spiral that wrote it")
            # Where the line points is checked before what it says: a hostile path is named as one.
            contained(path.parent, data.get("dir", ""), f"{path}: line {number}: step folder")
            data = migrate(data)
            kind = data.get("kind")
            if not isinstance(kind, str) or kind not in PASSES:
                raise InputError(f"{path}: line {number} is not a ledger entry (kind: {kind!r} is no pass this "
                                 f"spiral runs: {', '.join(PASSES)})")
            try:
                entries.append(PASSES[kind].record.model_validate(data))
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"]) or "the line"
                raise InputError(f"{path}: line {number} is not a ledger entry ({where}: {error['msg']})") from None
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
