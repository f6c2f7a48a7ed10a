"""``spiralprune run CONFIG.yaml``: the spiral on a user's model and data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from spiralprune.deploy.validation import validate
from spiralprune.pipeline.commands import console
from spiralprune.pipeline.config import DistributedConfig, RunConfig, load_config
from spiralprune.pipeline.exit_codes import of_run
from spiralprune.pipeline.specs import trusting_model_code

if TYPE_CHECKING:
    from rich.console import Console

    from spiralprune.pipeline.spiral import SpiralOutcome

# The flags that override the config's distributed: block, as torchrun spells them, by its keys.
DISTRIBUTED_FLAGS = {"device": "--train-device", "processes": "--nproc-per-node", "nnodes": "--nnodes",
                     "node_rank": "--node-rank", "rdzv_endpoint": "--rdzv-endpoint"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="run configuration (YAML)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run already in --out")
    group = parser.add_argument_group("training and scoring processes (override the config's distributed: block)")
    group.add_argument(DISTRIBUTED_FLAGS["device"], dest="device", choices=["auto", "cpu", "cuda"],
                       help="where the run trains (default auto: a GPU when one is visible); it measures on its target")
    group.add_argument(DISTRIBUTED_FLAGS["processes"], dest="processes", type=int, metavar="N",
                       help="train on N processes per node (torchrun, DistributedDataParallel), and split a step's "
                            "sensitivity or taylor-group scoring across them; measurement stays one process")
    group.add_argument(DISTRIBUTED_FLAGS["nnodes"], dest="nnodes", type=int, metavar="N", help="nodes that train")
    group.add_argument(DISTRIBUTED_FLAGS["node_rank"], dest="node_rank", type=int, metavar="R",
                       help="this node's rank among them")
    group.add_argument(DISTRIBUTED_FLAGS["rdzv_endpoint"], dest="rdzv_endpoint", metavar="HOST:PORT",
                       help="node 0's rendezvous (needed with more than one node)")


def print_outcome(outcome: SpiralOutcome, console: Console) -> int:
    from rich.table import Table

    from spiralprune.pipeline.report.run import step_cells, step_columns, step_rows

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


class _Flags(BaseModel):
    """The flags' block as the config holds it, so that an error names its key as a config error does."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    distributed: DistributedConfig


def with_flags(config: RunConfig, flags: dict[str, object]) -> RunConfig:
    """``config`` with its ``distributed:`` keys replaced by the flags given (None: not given), validated
    as the config's own block is (a bad combination is one line naming the flags)."""
    given = {key: value for key, value in flags.items() if value is not None}
    if not given:
        return config
    where = "spiralprune run " + " ".join(DISTRIBUTED_FLAGS[key] for key in given)
    flagged = validate(_Flags, {"distributed": {**config.distributed.model_dump(), **given}}, where)
    return config.model_copy(update={"distributed": flagged.distributed})


def execute(config_path: Path, out: Path, resume: bool, distributed: dict[str, object] | None = None) -> int:
    from spiralprune.pipeline.spiral import Spiral

    config = with_flags(load_config(config_path), distributed or {})
    with trusting_model_code(config.trust_model_code, typed=[config.model]):
        outcome = Spiral(config, out, resume=resume).run()
    return print_outcome(outcome, console())


def run_dir(args: argparse.Namespace) -> Path:
    return args.out or Path("runs") / args.config.stem


def run(args: argparse.Namespace) -> int:
    return execute(args.config, run_dir(args), args.resume, {key: getattr(args, key) for key in DISTRIBUTED_FLAGS})


def interrupted(args: argparse.Namespace) -> str:
    out = run_dir(args)
    return (f"finished attempts are kept in {out}/ledger.jsonl; continue with: "
            f"spiralprune run {args.config} --out {out} --resume")
