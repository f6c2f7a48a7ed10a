"""Write files and directories so that a reader sees either nothing or the whole thing.

Everything written here gets the mode an ordinary ``open`` or ``mkdir`` would give it under the
process umask (``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders): ``tempfile`` creates
its files and folders private (0600, 0700), which would keep what a container writes into a
mounted folder from the host's user.

It lives in ``core`` because every layer writes artifacts, the device runner too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def temp_file_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder (created if missing), with the mode ``open`` would give it;
    ``os.replace`` it onto ``path`` once it is written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
    finally:
        os.close(fd)
    return Path(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    tmp = temp_file_beside(Path(path))
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written directory (a ``tempfile.mkdtemp`` one, say) into place, replacing an older one,
    with the mode ``mkdir`` would give it."""
    os.chmod(tmp_dir, 0o777 & ~umask())
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)
