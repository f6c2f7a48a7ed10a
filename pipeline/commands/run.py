"""``spiral run CONFIG.yaml``: the spiral on a user's model and data."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spiral.pipeline.commands import console
from spiral.pipeline.config import load_config
from spiral.pipeline.exit_codes import of_run
from spiral.pipeline.report.run import step_cells, step_columns, step_rows
from spiral.pipeline.specs import trusting_model_code
from spiral.pipeline.spiral import Spiral, SpiralOutcome



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="run configuration (YAML)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run already in --out")


def print_outcome(outcome: SpiralOutcome, console: Console) -> int:
    table = Table(title="spiral steps")
    for column in step_columns(outcome.budget):
        table.add_column(column, overflow="fold")
    for row in step_rows(outcome.teacher, [e.to_json() for e in outcome.entries]):
        style = {"accepted": "green", "rejected": "red"}.get(row["verdict"], "")
        *cells, verdict, reason = step_cells(row, outcome.budget)
        table.add_row(*cells, f"[{style}]{verdict}[/]" if style else verdict, reason)
    console.print(table)
    for path in outcome.report_paths:
        console.print(f"report: {path}")
    if outcome.met_budget:
        console.print(f"[green]{outcome.message}[/]")
    else:
        console.print(f"[red]no step met the budget[/]: {outcome.message}")
    console.print(outcome.result, highlight=False)
    return of_run(outcome.met_budget, [e.to_json() for e in outcome.entries])


def execute(config_path: Path, out: Path, resume: bool) -> int:
    config = load_config(config_path)
    with trusting_model_code(config.trust_model_code, typed=[config.model]):
        outcome = Spiral(config, out, resume=resume).run()
    return print_outcome(outcome, console())


def run_dir(args: argparse.Namespace) -> Path:
    return args.out or Path("runs") / args.config.stem


def run(args: argparse.Namespace) -> int:
    return execute(args.config, run_dir(args), args.resume)


def interrupted(args: argparse.Namespace) -> str:
    out = run_dir(args)
    return (f"finished attempts are kept in {out}/ledger.jsonl; continue with: "
            f"spiral run {args.config} --out {out} --resume")
