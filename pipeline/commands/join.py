"""``spiralprune join RUN --node-rank K``: this node's part in the trainings of a run that node 0 leads.

A run on several nodes is one ``spiralprune run`` on node 0 (``--nnodes N --rdzv-endpoint HOST:PORT``),
which plans, measures and records it alone, and one ``join`` on each other node, which runs node 0's
torchrun jobs with its node rank until node 0's run ends (``spiralprune.pipeline.nodes``). The run folder is
on a filesystem every node sees at the same path; node 0 announces each job there, with its nodes,
endpoint and join timeout, so a follower needs only its rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="node 0's run folder (its --out), at the same path on every node")
    parser.add_argument("--node-rank", dest="node_rank", type=int, required=True, metavar="K",
                        help="this node's rank, 1 to nnodes-1 (node 0 runs spiralprune run)")
    parser.add_argument("--nproc-per-node", dest="processes", type=int, metavar="N",
                        help="training processes on this node (default: as many as node 0's)")


def run(args: argparse.Namespace) -> int:
    from spiralprune.core.errors import InputError
    from spiralprune.pipeline.commands import console
    from spiralprune.pipeline.exit_codes import ExitCode
    from spiralprune.pipeline.nodes import Board
    from spiralprune.pipeline.run_folder import RunFolder
    from spiralprune.pipeline.torchrun import follow

    if args.node_rank < 1:
        raise InputError(f"--node-rank {args.node_rank}: a follower is node 1 or above (node 0 runs spiralprune run)")
    if args.processes is not None and args.processes < 1:
        raise InputError(f"--nproc-per-node {args.processes}: at least 1")
    folder = RunFolder(args.run)
    if not folder.config.is_file():
        raise InputError(f"{args.run} is not a spiralprune run folder (no {folder.config.name}): give the --out of "
                         "node 0's spiralprune run, once it has started, on a filesystem every node sees at the same "
                         "path")
    out = console(stderr=True)
    follow(Board(folder.nodes), args.node_rank, args.processes, lambda line: out.print(line, highlight=False))
    return ExitCode.OK


def interrupted(args: argparse.Namespace) -> str:
    return (f"node {args.node_rank} left the run in {args.run}: a job of node 0's running now fails; its next one "
            f"waits distributed.join_timeout_s for spiralprune join {args.run} --node-rank {args.node_rank} to start "
            "again")
