"""``spiralprune quantize MODEL --data SPEC``: post-training static INT8, measured beside the float model and accepted or not."""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.pipeline.commands import (
    add_backend_argument, add_task_argument, add_weights_argument, console, parse_shape, task_config,
)
from spiralprune.pipeline.exit_codes import ExitCode, judged
from spiralprune.pipeline.passes.int8.config import QUANTIZED_BACKENDS, QuantizeConfig
from spiralprune.pipeline.tasks.metric import Metric

if TYPE_CHECKING:
    from rich.console import Console



def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = QuantizeConfig()
    parser.add_argument("model", help="an .onnx file, a model spec or a spiral checkpoint directory")
    add_weights_argument(parser)
    parser.add_argument("--data", required=True,
                        help="calibration (train split) and evaluation (validation split) data: digits, an "
                             "ImageFolder directory or package.module:factory")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the accepted INT8 model is written (default: MODEL's name + .int8.onnx here)")
    add_backend_argument(parser, choices=QUANTIZED_BACKENDS, default="ort-cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--input-shape", help="input shape to export a model spec with, e.g. 1,3,32,32")
    parser.add_argument("--method", choices=("minmax", "entropy", "percentile"), default=defaults.method,
                        help="calibration method")
    parser.add_argument("--calibration-batches", type=int, default=defaults.calibration_batches,
                        help="training batches the ranges are calibrated on")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="calibration batch size")
    parser.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor instead of per channel")
    parser.add_argument("--max-drop", type=float, default=None,
                        help=f"accuracy points the INT8 model may lose against the float model (default "
                             f"{defaults.max_drop:g})")
    parser.add_argument("--min-speedup", type=float, default=None,
                        help=f"speedup over the float model the judge must grant (default {defaults.min_speedup:g}: "
                             "surely faster)")
    parser.add_argument("--budget", type=Path, default=None,
                        help="the INT8 model's budget as a YAML file, in a budget's keys (latency.min_speedup, the "
                             "metric's max_drop, size: max_mb, max_params, max_macs); instead of --max-drop and "
                             "--min-speedup")
    parser.add_argument("--max-float-nodes", type=int, default=defaults.max_float_nodes,
                        help="when INT8 loses more than --max-drop, keep up to this many of its most sensitive "
                             "Conv/Gemm/MatMul nodes float and judge that model instead (0: no fallback, every "
                             "operator INT8; default %(default)d)")
    parser.add_argument("--sensitivity-batches", type=int, default=defaults.sensitivity_batches,
                        help="training batches, apart from the calibration ones, the fallback measures "
                             "sensitivity on")
    parser.add_argument("--recovery-epochs", type=int, default=defaults.recovery_epochs,
                        help="when INT8 still loses more than --max-drop after the fallback, epochs of "
                             "quantization-aware training through simulated INT8, the float model teaching (needs a "
                             "model spec or checkpoint; 0: none; default %(default)d)")
    parser.add_argument("--recovery-lr", type=float, default=defaults.recovery_lr,
                        help="learning rate of that training")
    parser.add_argument("--max-duration", type=float, default=ProfileSettings().max_duration_s,
                        help="seconds of paired rounds at most")
    add_task_argument(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from spiralprune.core.atomic import write_json
    from spiralprune.deploy.budget import Budget
    from spiralprune.deploy.profiler import MeasuringSession, Target
    from spiralprune.deploy.validation import read_yaml, validate
    from spiralprune.pipeline.data import load_datasets
    from spiralprune.pipeline.distill.config import DistillConfig
    from spiralprune.pipeline.gate.prepare import onnx_task, prepare_model
    from spiralprune.pipeline.passes.int8.model import Trainable, int8_model, judge_quantized
    from spiralprune.pipeline.prune.plan import example_input

    settings = {"method": args.method, "calibration_batches": args.calibration_batches, "batch_size": args.batch_size,
                "per_channel": not args.per_tensor, "max_float_nodes": args.max_float_nodes,
                "sensitivity_batches": args.sensitivity_batches, "recovery_epochs": args.recovery_epochs,
                "recovery_lr": args.recovery_lr}
    if args.budget is not None:  # what the file leaves out is the default's (QuantizeConfig._budget_defaults)
        if args.max_drop is not None or args.min_speedup is not None:
            raise InputError("--budget gives the INT8 model's limits; drop --max-drop and --min-speedup, or set "
                             "them in the budget file")
        budget = validate(Budget, read_yaml(args.budget, "budget"), str(args.budget))  # a budget file's keys
        try:
            cfg = QuantizeConfig(**settings, budget=budget)
        except ValidationError as exc:  # a key the INT8 stage cannot judge (Budget.refuse)
            raise InputError(f"{args.budget}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    else:
        budget = {"latency": {"min_speedup": args.min_speedup}, "metric": {"max_drop": args.max_drop}}
        try:
            cfg = QuantizeConfig(**settings, budget={part: limit for part, limit in budget.items()
                                                     if None not in limit.values()})
        except ValidationError as exc:
            error = exc.errors()[0]
            key = error["loc"][-1] if error["loc"][0] == "budget" else error["loc"][0]  # budget.latency.min_speedup
            raise InputError(f"--{str(key).replace('_', '-')}: {error['msg']}") from None
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be positive, got {args.threads}")
    shape = parse_shape(args.input_shape) if args.input_shape else None
    settings = ProfileSettings(max_duration_s=args.max_duration, min_duration_s=min(ProfileSettings().min_duration_s,
                                                                                     args.max_duration))
    with tempfile.TemporaryDirectory(prefix="spiral-quantize-") as work:
        prepared = prepare_model(args.model, Path(work) / "float", shape, weights=args.weights)
        train_set, val_set = load_datasets(args.data, prepared.input_shape)
        if len(val_set) == 0:
            raise InputError(f"data '{args.data}' has an empty validation split")
        int8 = Path(work) / "int8" / "model.int8.onnx"
        trainable = None if prepared.source is None else Trainable(  # the float model teaches its INT8 self
            prepared.source, copy.deepcopy(prepared.source), example_input(prepared.input_shape, prepared.input_dtype),
            DistillConfig())
        task = onnx_task(task_config(args.task), prepared.onnx_path)
        made = int8_model(prepared.onnx_path, int8, train_set, val_set, task, cfg, trainable)
        target = Target(args.backend, prepared.input_shape[0], args.threads)
        with MeasuringSession(target, Path(work) / "compiled") as session:
            result = judge_quantized(prepared.onnx_path, int8, session, settings, made, cfg, metric=task.quality())
        out = args.out or Path(f"{Path(args.model.rstrip('/')).name.removesuffix('.onnx')}.int8.onnx")
        if result.accepted:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_bytes(int8.read_bytes())
            tmp.replace(out)
    record = result.to_dict()
    print_result(record, made.batches, cfg, console(), task.quality())
    print(f"{'accepted' if result.accepted else 'rejected'}: {result.reason}")
    print(f"int8 model: {out}" if result.accepted else "the float model stays the result; nothing written")
    if args.json is not None:
        write_json(args.json, {**record, "model": args.model, "out": str(out) if result.accepted else None,
                               "settings": json.loads(cfg.model_dump_json())})
    return exit_code(record)


def exit_code(result: dict) -> ExitCode:
    """``result`` (``QuantizeResult.to_dict``) rejected only because the judge could not decide the speedup is
    undecided; a check that failed (a speedup the judge refuses, the metric worse than ``max_drop`` allows,
    in the metric's direction) is a verdict against INT8."""
    statuses = {check["status"] for check in result["checks"]}
    return judged(against="fail" in statuses, undecided="inconclusive" in statuses)


def print_result(result: dict, batches: int, cfg: QuantizeConfig, console: Console, metric: Metric) -> None:
    """The float and INT8 models side by side (``metric``: the task's, as shown), the speedup, what the
    remedies did."""
    from rich.table import Table

    from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8

    table = Table(title=f"INT8 (QDQ, {cfg.method}, {batches} calibration batches, "
                        f"{'per-channel' if cfg.per_channel else 'per-tensor'} weights) vs float, measured paired")
    for column in ("model", "p50 ms", metric.label, "size MB"):
        table.add_column(column, justify="right")
    fallback = result["fallback"]
    kept = len(fallback["float_nodes"]) if fallback else 0
    for name in (FLOAT, INT8):
        label = f"{name} ({kept} node{'s' * (kept != 1)} float)" if name == INT8 and kept else name
        quality = result["accuracy"][name]
        table.add_row(label, f"{result['p50_ms'][name]:.4f}", f"{quality:.2f}" if metric.unit == "%" else f"{quality:.4g}",
                      f"{result['size_mb'][name]:.3f}")
    console.print(table)
    low, high = result["speedup_ci"]
    speedup = (f"{result['speedup']:.2f}x ({low:.2f}x .. {high:.2f}x)" if math.isfinite(result["speedup"])
               else "n/a (no paired round ran on a free CPU)")
    console.print(f"speedup {speedup}; calibration {result['calibration_s']:.1f} s")
    recovery = result["recovery"]
    if recovery is not None and recovery["kept"]:
        after = recovery["with_fallback"] if recovery["with_fallback"] is not None else recovery["accuracy"]
        console.print(f"quantization-aware recovery: {recovery['epochs']} epochs at lr {recovery['lr']:g}, INT8 "
                      f"{recovery['before']:.2f}{metric.unit} -> {after:.2f}{metric.unit} ({recovery['seconds']:.0f} s)")
    if kept:
        nodes = Table(title=f"kept float, most sensitive of {fallback['measured_nodes']} first (sensitivity: the "
                            f"KL(float || INT8) it removes alone, on {fallback['held_out_samples']} held-apart "
                            f"training samples; {fallback['seconds']:.1f} s)")
        for column in ("node", "op", "sensitivity", "disagreement % after"):
            nodes.add_column(column, justify="left" if column == "node" else "right")
        for node in fallback["float_nodes"]:
            nodes.add_row(node["node"], node["op_type"], f"{node['sensitivity_kl']:.4g}", f"{node['disagreement_pct']:.2f}")
        console.print(nodes)
