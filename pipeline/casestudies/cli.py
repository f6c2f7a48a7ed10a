"""``python -m spiralprune.pipeline.casestudies.<builder>``: build a case study's data, print where it is."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from spiralprune.core.errors import InputError


def run_builder(
    parser: argparse.ArgumentParser, build: Callable[[argparse.Namespace], Path], argv: list[str] | None
) -> int:
    """Exit codes as the ``spiralprune`` CLI: 0 built (or already cached), 2 bad input or environment."""
    args = parser.parse_args(argv)
    try:
        print(build(args))
    except InputError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
