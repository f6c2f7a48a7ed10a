"""The command line of both programs the bundle runs on the device: ``run`` (the whole deploy on the
device) and ``ort-build`` / ``ort-profile`` (the build and profile commands of CPU targets)."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from .bundle_run import run
from .errors import ERROR_MARK, EXIT_ERROR, DeviceError
from .ort_steps import ort_build, ort_profile

PROG = "python3 -m spiralprune.deploy.device_runner"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The half of ``spiralprune deploy`` that runs on the device, shipped inside the bundle.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="verify, build (or reuse), profile and write results/")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--manifest-sha256", required=True)
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("ort-build", help="save ONNX Runtime's optimized graph (the engine of CPU targets)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p = sub.add_parser("ort-profile", help="time the optimized graph with ONNX Runtime and profile its layers")
    p.add_argument("--engine", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="the ONNX model, whose graph names the layers")
    p.add_argument("--times", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--settings", required=True, help="the profile settings as JSON")
    p.add_argument("--inputs", help="the bundle's input files by input name as JSON (default: seeded random inputs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.bundle.resolve(), args.manifest_sha256, args.cache.resolve())
        elif args.command == "ort-build":
            ort_build(args.model, args.engine, args.threads)
        else:
            ort_profile(args.engine, args.model, args.times, args.threads, args.batch, json.loads(args.settings),
                        json.loads(args.inputs) if args.inputs else None)
    except DeviceError as exc:
        print(f"{ERROR_MARK} {exc.kind}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        kind = "disk-full" if exc.errno == errno.ENOSPC else "io"
        print(f"{ERROR_MARK} {kind}: {exc.strerror}: {exc.filename or ''}".rstrip(": "), file=sys.stderr, flush=True)
        return EXIT_ERROR
    return 0
