"""The ``spiral`` command line: one module per subcommand under ``pipeline.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from deploy.errors import InputError
from pipeline.specs import trusting_model_code

# Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
COMMAND_MODULES = [
    "pipeline.commands.demo",
    "pipeline.commands.run",
    "pipeline.commands.prune",
    "pipeline.commands.export",
    "pipeline.commands.quantize",
    "pipeline.commands.gate",
    "pipeline.commands.compare",
    "pipeline.commands.report",
    "pipeline.commands.profile",
    "pipeline.commands.targets",
    "pipeline.commands.deploy",
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
        p.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with trusting_model_code(args.trust_model_code):
            return int(args.handler(args))
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spiral: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spiral: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
