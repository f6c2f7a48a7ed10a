"""Write the report files a command was asked for, each atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spiralprune.core.atomic import write_json, write_text

Render = Callable[[], "str | dict[str, Any]"]


def write_outputs(outputs: Sequence[tuple[Path | None, Render]]) -> list[Path]:
    """Render and write each ``(path, render)`` whose path was given: a dict as JSON, a string as text."""
    written = []
    for path, render in outputs:
        if path is None:
            continue
        content = render()
        if isinstance(content, dict):
            write_json(path, content)
        else:
            write_text(path, content)
        written.append(path)
    return written
