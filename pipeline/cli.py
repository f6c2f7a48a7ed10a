"""The ``spiral`` command line: one module per subcommand under ``spiral.pipeline.commands``."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback

from spiral.deploy.errors import InputError
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiral", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
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


def main(argv: list[str] | None = None) -> int:
    """Run one command. Ctrl-C (exit 130) and SIGTERM (exit 143) print one line: what is kept and
    how to go on (the command's ``interrupted(args)``); every file is written whole or not at all,
    and a second signal while that line is printed is ignored."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with trusting_model_code(args.trust_model_code):
            return int(args.handler(args))
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spiral: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        terminated = isinstance(exc, Terminated)
        kept = args.interrupted(args) if args.interrupted else "nothing was written"
        print(f"spiral: {'terminated' if terminated else 'interrupted'}: {kept}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
