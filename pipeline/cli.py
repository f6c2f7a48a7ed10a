"""The ``spiral`` command line: one module per subcommand under ``spiral.pipeline.commands``."""

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
from pathlib import Path
from typing import Any, NoReturn

from spiral.deploy.atomic import write_text
from spiral.deploy.errors import InputError
from spiral.pipeline.exit_codes import EPILOG, HELP_WIDTH, ExitCode
from spiral.pipeline.specs import trusting_model_code

# Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
COMMAND_MODULES = [
    "spiral.pipeline.commands.demo",
    "spiral.pipeline.commands.run",
    "spiral.pipeline.commands.prune",
    "spiral.pipeline.commands.export",
    "spiral.pipeline.commands.quantize",
    "spiral.pipeline.commands.gate",
    "spiral.pipeline.commands.compare",
    "spiral.pipeline.commands.report",
    "spiral.pipeline.commands.profile",
    "spiral.pipeline.commands.targets",
    "spiral.pipeline.commands.deploy",
]


class Parser(argparse.ArgumentParser):
    """Every parser lists the exit codes; a usage error is one line and exit 2, as any bad input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spiral", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=textwrap.fill(module.HELP, HELP_WIDTH))
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
        p.add_argument("--trust-model-code", action="store_true",
                       help="import the package.module:factory a checkpoint or run folder names (spiral's zoo and "
                            "torchvision load without it): only for folders you trust, such as your own")
        module.add_arguments(p)
        p.set_defaults(handler=module.run, interrupted=getattr(module, "interrupted", None))
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
        write_text(path, f"{shlex.join(['spiral', *argv])}\n{trace}")
        where = f"traceback in {path}"
    except (OSError, RuntimeError) as error:  # RuntimeError: no home directory to find the cache in
        where, debug = f"traceback above; it could not be saved: {error}", True
    if debug:
        print(trace, end="", file=sys.stderr)
    message = " ".join(str(exc).split())
    print(f"spiral: internal error: {type(exc).__name__}: {message} ({where})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code says how it ended (``spiral.pipeline.exit_codes``).

    Bad input is one line (exit 2); any other exception is an internal error: one line naming the
    log file that holds its traceback (exit 3). Ctrl-C (exit 130) and SIGTERM (exit 143) print one
    line: what is kept and how to go on (the command's ``interrupted(args)``); every file is written
    whole or not at all, and a second signal while that line is printed is ignored."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with trusting_model_code(args.trust_model_code):
            return int(args.handler(args))
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spiral: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        terminated = isinstance(exc, Terminated)
        kept = args.interrupted(args) if args.interrupted else "nothing was written"
        print(f"spiral: {'terminated' if terminated else 'interrupted'}: {kept}", file=sys.stderr)
        return ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    except Exception as exc:
        internal_error(exc, argv, args.debug)
        return ExitCode.INTERNAL_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
