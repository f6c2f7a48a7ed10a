"""spiralprune (spiral): prune, distill, export, compile, profile and gate PyTorch models
on the machine they will run on."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from spiralprune import __version__
from spiralprune.core.atomic import write_text
from spiralprune.core.errors import InputError
from spiralprune.pipeline.exit_codes import EPILOG, HELP_WIDTH, ExitCode
from spiralprune.pipeline.specs import trusting_model_code


@dataclass(frozen=True)
class Command:
    """A subcommand: its module ``spiralprune.pipeline.commands.NAME`` defines ``add_arguments(parser)``, ``run(args)
    -> int`` and optionally ``interrupted(args) -> str``. It is imported only when its command is run or its
    ``--help`` asked for, so that ``spiralprune --help`` and ``spiralprune --version`` import no torch."""

    help: str
    loads_models: bool  # rebuilds models from checkpoints or run folders: takes --trust-model-code


COMMANDS = {
    "demo": Command("train a digits ResNet teacher (cached) and run the spiral on ONNX Runtime CPU", False),
    "run": Command("run the prune/distill/compile/profile spiral described by a YAML config", True),
    "join": Command("take part in the trainings of a spiralprune run that node 0 leads, on another node (a run "
                    "folder every node sees)", False),
    "prune": Command("remove channels from a model once (NNI or Torch-Pruning criterion) and save it as a checkpoint",
                     True),
    "export": Command("export a model spec, checkpoint or run folder (its last accepted step) to ONNX, with a parity "
                      "check", True),
    "quantize": Command("post-training static INT8 (ONNX Runtime QDQ): calibrate on real data, measure beside the "
                        "float model, accept or not", True),
    "gate": Command("gate a model release on its latency, accuracy, size and ONNX parity budget", True),
    "compare": Command("is the new model slower? measure two ONNX models paired, compare two profiles, or draw a "
                       "release trend", False),
    "report": Command("render a finished spiralprune run as Markdown, HTML with plots and JUnit XML", False),
    "profile": Command("measure a model's latency on a backend in rounds (p50/p90/p95/p99, robust CV, stable flag)",
                       True),
    "targets": Command("list the compile/profile backends and whether each is available on this machine", False),
    "deploy": Command("ship a model to a device over SSH, build and profile it there, and gate it against the "
                      "target's budget", True),
}


# The optional dependencies (pyproject.toml's extras), by the module a missing one fails to import.
EXTRAS = {
    "onnxruntime": "pip install 'spiralprune[cpu]' (or 'spiralprune[gpu]' on an NVIDIA host)",
    "nni": "pip install 'spiralprune[nni]'",
    "timm": "pip install 'spiralprune[timm]'",
    "librosa": "pip install 'spiralprune[examples]'",
    "tensorrt": "pip install 'spiralprune[gpu]'",
    "cuda": "pip install 'spiralprune[gpu]'",
}


def missing_extra(exc: ModuleNotFoundError) -> InputError | None:
    """A missing optional dependency as bad input naming what to install; None for any other missing module."""
    module = (exc.name or "").partition(".")[0]
    return InputError(f"{module} is not installed: {EXTRAS[module]}") if module in EXTRAS else None


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"spiralprune.pipeline.commands.{name}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default shown, unless its help already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS, []) and action.default is not False
        if not shown or "default" in text or not action.option_strings:
            return text
        default = ",".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
        return f"{text} (default: {default})"


class Parser(argparse.ArgumentParser):
    """Every parser lists the exit codes; a usage error is one line and exit 2, as any bad input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"epilog": EPILOG, "formatter_class": HelpFormatter, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Commands(argparse._SubParsersAction):
    """The subcommands, each given its options when argparse reaches it (its module imported then)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values and values[0] in COMMANDS:
            add_command_arguments(self.choices[values[0]], values[0])
        super().__call__(parser, namespace, values, option_string)


def add_command_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    module = command_module(name)
    if COMMANDS[name].loads_models:
        parser.add_argument("--trust-model-code", action="store_true",
                            help="import the package.module:factory a checkpoint or run folder names (spiral's zoo "
                                 "and torchvision load without it): only for folders you trust, such as your own")
    module.add_arguments(parser)
    parser.set_defaults(handler=module.run, interrupted=getattr(module, "interrupted", None),
                        trust_model_code=False)


class PrintCompletion(argparse.Action):
    """``--print-completion SHELL``: shtab's completion script for every command and option. The commands'
    options are added first: ``--help`` of one command imports only its module, a completion script
    names them all (their modules import no torch)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import shtab

        commands = next(a for a in parser._actions if isinstance(a, Commands))
        for name in COMMANDS:
            add_command_arguments(commands.choices[name], name)
        print(shtab.complete(parser, shell=values), end="")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spiralprune", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--print-completion", choices=("bash", "zsh", "tcsh"), metavar="SHELL", action=PrintCompletion,
                        help="print the completion script of SHELL (bash, zsh or tcsh), e.g. spiralprune "
                             "--print-completion bash > ~/.local/share/bash-completion/completions/spiralprune")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=Commands)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=textwrap.fill(command.help, HELP_WIDTH))
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def log_dir() -> Path:
    """Where an internal error's traceback is kept: ``$XDG_CACHE_HOME/spiral/logs`` (``~/.cache/spiral/logs``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spiral" / "logs"


def internal_error(exc: Exception, argv: list[str], debug: bool) -> None:
    """One line on stderr naming the log file that holds the traceback (with ``debug``, the traceback too)."""
    trace = "".join(traceback.format_exception(exc))
    try:
        path = log_dir() / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        write_text(path, f"{shlex.join(['spiralprune', *argv])}\n{trace}")
        where = f"traceback in {path}"
    except (OSError, RuntimeError) as error:  # RuntimeError: no home directory to find the cache in
        where, debug = f"traceback above; it could not be saved: {error}", True
    if debug:
        print(trace, end="", file=sys.stderr)
    message = " ".join(str(exc).split())
    print(f"spiralprune: internal error: {type(exc).__name__}: {message} ({where})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code says how it ended (``spiralprune.pipeline.exit_codes``).

    Bad input is one line (exit 2); any other exception is an internal error: one line naming the
    log file that holds its traceback (exit 3). Ctrl-C (exit 130) and SIGTERM (exit 143) print one
    line: what is kept and how to go on (the command's ``interrupted(args)``); every file is written
    whole or not at all, and a second signal while that line is printed is ignored."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)  # imports the command's module
    except ModuleNotFoundError as exc:
        if (error := missing_extra(exc)) is None:
            raise
        print(f"spiralprune: error: {error}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        try:
            with trusting_model_code(args.trust_model_code):
                return int(args.handler(args))
        except ModuleNotFoundError as exc:
            raise missing_extra(exc) or exc
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spiralprune: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        terminated = isinstance(exc, Terminated)
        kept = args.interrupted(args) if args.interrupted else "nothing was written"
        print(f"spiralprune: {'terminated' if terminated else 'interrupted'}: {kept}", file=sys.stderr)
        return ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    except Exception as exc:
        internal_error(exc, argv, args.debug)
        return ExitCode.INTERNAL_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
