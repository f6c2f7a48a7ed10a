"""The subcommands of ``spiralprune``, one module each (the list and their one-line help are in
``spiralprune.pipeline.cli``).

Options that several commands take are defined here once, so that they mean the same and accept the
same values everywhere: ``--backend`` names what measures on this machine (``--target`` is kept for the
device targets of ``spiralprune deploy``), ``--precision`` takes one set of values.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spiralprune.core.errors import InputError

LOG_WIDTH = 160  # where no terminal is (a CI log, a file) and COLUMNS is not set: tables at this width
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # the union of the backends' own; a backend refuses what it cannot build
INPUT_DTYPES = ("float32", "int64")  # int64: token ids


def add_backend_argument(parser: argparse.ArgumentParser, **kwargs) -> None:
    parser.add_argument("--backend", help="the backend that measures on this machine (see 'spiralprune targets')", **kwargs)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="precision the backend builds the model in, as the backend allows")


def console(stderr: bool = False):
    """A console for a command's output at the terminal's width, else ``COLUMNS`` when set, else
    ``LOG_WIDTH``: a CI log has no width to follow, and rich's 80 columns would squeeze the tables."""
    from rich.console import Console  # imported when a command prints, not for --help

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() or os.environ.get("COLUMNS") else LOG_WIDTH)


def add_task_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="classification", metavar="KIND|FILE",
                        help="what the model does: classification (default) or segmentation, or a YAML file with a run "
                             "config's task: block (detection and custom name their loss and post-processing there)")


def task_config(value: str):
    """``--task``: a task kind, or a YAML file holding a ``task:`` block (its keys, or ``task:`` and them)."""
    from spiralprune.deploy.validation import read_yaml, validate
    from spiralprune.pipeline.tasks import TaskConfig

    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        data = read_yaml(path, "task")
        data = data.get("task", data) if isinstance(data, dict) else data
        return validate(TaskConfig, data, str(path))
    return validate(TaskConfig, {"kind": value}, "--task")


def parse_shape(text: str) -> list[int]:
    try:
        shape = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise InputError(f"input shape '{text}' is not a comma-separated list of integers, e.g. 1,3,224,224") from None
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise InputError(f"input shape '{text}' needs positive dimensions with the batch first, e.g. 1,3,224,224")
    return shape


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None,
                        help="your trained weights for a model spec: a .safetensors file or a state dict saved by "
                             "torch.save (read with weights_only=True; DDP/Lightning key prefixes removed)")


def add_torch_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--compile-mode``, the options of the torch targets."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the torch targets (torch, torch-compile) run the module (default cpu)")
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune"), default="default",
                        help="torch.compile mode for torch-compile; reduce-overhead uses CUDA graphs (default default)")


def batch_sizes(text: str) -> list[int]:
    """``--batch``: comma-separated positive batch sizes, the one syntax of every command that takes it."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch takes comma-separated integers, got '{text}'") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch sizes must be positive, got '{text}'")
    return sizes


def add_batch_argument(parser: argparse.ArgumentParser, **kwargs) -> None:
    parser.add_argument("--batch", type=batch_sizes, metavar="N[,N...]", **kwargs)
