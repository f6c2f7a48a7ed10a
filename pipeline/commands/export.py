"""``spiralprune export MODEL --out model.onnx``: the ONNX file a user ships, from a spec, a checkpoint or a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from spiralprune.core.errors import InputError
from spiralprune.kernels import OPSET
from spiralprune.pipeline.commands import INPUT_DTYPES, add_task_argument, add_weights_argument, parse_shape, task_config
from spiralprune.pipeline.exit_codes import ExitCode

MIN_OPSET = 13  # the oldest opset every operator spiral's models use exports to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model spec, a spiral checkpoint directory or a spiralprune run folder")
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    add_weights_argument(parser)
    parser.add_argument("--input-shape", help="input shape, batch first, e.g. 1,3,224,224 (default: the checkpoint's)")
    parser.add_argument("--fixed-batch", action="store_true",
                        help="fix the batch axis at the input shape's batch (default: a dynamic batch axis)")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    parser.add_argument("--input-dtype", choices=INPUT_DTYPES,
                        help="input dtype (default: the checkpoint's, else float32)")
    parser.add_argument("--atol", type=float, default=1e-3, help="parity tolerance, times max |output| above 1")
    parser.add_argument("--output-atol", action="append", default=[], metavar="NAME=TOL",
                        help="one output's parity tolerance in place of --atol (repeatable), e.g. boxes=1e-2")
    add_task_argument(parser)


def run(args: argparse.Namespace) -> int:
    from spiralprune.pipeline.api import export

    if not MIN_OPSET <= args.opset <= OPSET:
        raise InputError(f"--opset {args.opset} is outside {MIN_OPSET}..{OPSET}")
    shape = parse_shape(args.input_shape) if args.input_shape else None
    parity = {"atol": args.atol, "outputs": dict(_output_atol(item) for item in args.output_atol)}
    exported = export(args.model, args.out, input_shape=shape, input_dtype=args.input_dtype, weights=args.weights,
                      dynamic_batch=not args.fixed_batch, opset=args.opset, parity=parity, task=task_config(args.task))
    parity, shape = exported.parity, exported.input_shape
    batch = f"batch fixed at {exported.fixed_batch}" if exported.fixed_batch else "dynamic batch"
    print(f"exported {exported.source} to {args.out} (opset {args.opset}, {batch}, input {shape[1:]})")
    agreement = "" if parity.top1_agreement is None else f", agreement {parity.top1_agreement:.1%}"
    if parity.values_compared:
        worst = f" of '{parity.worst}'" if len(parity.outputs) > 1 else ""
        compared = (f"({len(parity.outputs)} outputs): max |diff|{worst} {parity.max_abs_diff:.2e} "
                    f"(tolerance {parity.tolerance:.2e}){agreement}")
    else:
        compared = f"as detections (the graph has {', '.join(parity.data_dependent)}){agreement}"
    print(f"parity vs torch on {parity.samples} inputs {compared}: {'passed' if parity.passed else 'FAILED'}")
    if not parity.passed:
        print("the ONNX file was removed: it does not compute what the torch model computes")
        return ExitCode.AGAINST
    return ExitCode.OK


def _output_atol(item: str) -> tuple[str, float]:
    name, sep, value = item.partition("=")
    try:
        if not (sep and name):
            raise ValueError
        return name, float(value)
    except ValueError:
        raise InputError(f"--output-atol '{item}' is not NAME=TOLERANCE, e.g. boxes=1e-2") from None
