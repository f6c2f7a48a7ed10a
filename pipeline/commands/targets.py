"""``spiralprune targets``: every backend, whether it can run here, and why not."""

from __future__ import annotations

import argparse

from rich.table import Table

from spiralprune.pipeline.commands import console
from spiralprune.deploy.backends import list_backends
from spiralprune.pipeline.exit_codes import ExitCode



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: it reports on this machine."""


def run(args: argparse.Namespace) -> int:
    table = Table(title="backends")
    for column in ("backend", "available", "reason"):
        table.add_column(column, overflow="fold")
    for name, ok, reason in list_backends():
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", reason)
    console().print(table)
    return ExitCode.OK
