"""``spiral export MODEL --out model.onnx``: the ONNX file a user ships, from a spec, a checkpoint or a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from spiral.deploy.errors import InputError
from spiral.pipeline.export import OPSET, check_parity, export_onnx
from spiral.pipeline.gate.candidate import parity_inputs, parse_shape
from spiral.pipeline.prune import dtype_name
from spiral.pipeline.source import load_source

NAME = "export"
HELP = "export a model spec, checkpoint or run folder (its last accepted step) to ONNX, with a parity check"
MIN_OPSET = 13  # the oldest opset every operator spiral's models use exports to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model spec, a spiral checkpoint directory or a spiral run folder")
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    parser.add_argument("--input-shape", help="input shape, batch first, e.g. 1,3,224,224 (default: the checkpoint's)")
    parser.add_argument("--fixed-batch", action="store_true",
                        help="fix the batch axis at the input shape's batch (default: a dynamic batch axis)")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (default %(default)d)")
    parser.add_argument("--input-dtype", choices=("float32", "int64"), default=None,
                        help="input dtype (int64 for token ids; default: the checkpoint's, else float32)")
    parser.add_argument("--atol", type=float, default=1e-3, help="parity tolerance, times max |output| above 1")


def run(args: argparse.Namespace) -> int:
    if not MIN_OPSET <= args.opset <= OPSET:
        raise InputError(f"--opset {args.opset} is outside {MIN_OPSET}..{OPSET}")
    source = load_source(args.model)
    example = source.example(parse_shape(args.input_shape) if args.input_shape else None, args.input_dtype)
    shape, dtype, model = list(example.shape), dtype_name(example), source.module
    out = export_onnx(model, example, args.out, dynamic_batch=not args.fixed_batch, opset=args.opset)
    batch_size = shape[0] if args.fixed_batch else 64  # a fixed batch takes whole batches only
    inputs = parity_inputs(shape, None, samples=max(64 // batch_size, 1) * batch_size, dtype=dtype, model=model)
    parity = check_parity(model, out, inputs, atol=args.atol, min_top1_agreement=0.99, batch_size=batch_size)
    batch = f"batch fixed at {shape[0]}" if args.fixed_batch else "dynamic batch"
    print(f"exported {source.name} to {out} (opset {args.opset}, {batch}, input {shape[1:]})")
    print(f"parity vs torch on {parity.samples} inputs: max |diff| {parity.max_abs_diff:.2e} "
          f"(tolerance {parity.tolerance:.2e}), top-1 agreement {parity.top1_agreement:.1%}: "
          f"{'passed' if parity.passed else 'FAILED'}")
    if not parity.passed:
        out.unlink()
        print("the ONNX file was removed: it does not compute what the torch model computes")
        return 1
    return 0
