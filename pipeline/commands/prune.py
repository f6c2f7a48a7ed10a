"""``spiralprune prune MODEL``: one structural pruning step, saved as a spiral checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError
from spiralprune.pipeline.commands import (
    INPUT_DTYPES, add_task_argument, add_weights_argument, console, parse_shape, task_config,
)
from spiralprune.pipeline.exit_codes import ExitCode
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.prune.criteria import CRITERIA

if TYPE_CHECKING:
    from torch import nn

    from spiralprune.pipeline.prune.group import Calibration
    from spiralprune.pipeline.tasks import Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="torchvision:NAME, package.module:factory or a spiral checkpoint directory")
    add_weights_argument(parser)
    parser.add_argument("--input-shape", required=True, help="example input shape with the batch first, e.g. 1,3,32,32")
    parser.add_argument("--input-dtype", choices=INPUT_DTYPES, default="float32", help="example input dtype")
    # Torch-Pruning's magnitude, not NNI's l1: NNI is an extra (pyproject's [nni]), and the command's
    # default must run on spiral's base install.
    parser.add_argument("--criterion", default="tp-magnitude", choices=list(CRITERIA),
                        help="how channels are scored (l1, l2, fpgm, taylor need the nni extra)")
    parser.add_argument("--ratio", type=float, default=0.3, help="fraction of channels (heads) removed")
    parser.add_argument("--round-to", type=int, default=None, help="round kept channel counts to this multiple")
    parser.add_argument("--global", dest="global_pruning", action="store_true", help="rank channels across layers")
    parser.add_argument("--ignore", action="append", default=[], metavar="LAYER", help="layer (prefix) to keep whole")
    parser.add_argument(
        "--no-protect-first-last", dest="protect_first_last", action="store_false",
        help="allow pruning the stem convolution's output channels",
    )
    parser.add_argument(
        "--data", default=None, help="calibration data for the taylor criteria (digits, an image folder, a factory)"
    )
    add_task_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.table import Table

    from spiralprune.pipeline.checkpoint import save_checkpoint
    from spiralprune.pipeline.measure import count_macs_params
    from spiralprune.pipeline.prune import prune
    from spiralprune.pipeline.source import load_source
    from spiralprune.pipeline.tasks import build_task

    shape = parse_shape(args.input_shape)
    try:
        cfg = PruneConfig(
            criterion=args.criterion, ratio=args.ratio, global_pruning=args.global_pruning,
            ignored_layers=args.ignore, protect_first_last=args.protect_first_last, round_to=args.round_to,
        )
    except ValidationError as exc:
        raise InputError("; ".join(error["msg"] for error in exc.errors())) from None
    source = load_source(args.model, args.weights)
    model, base_spec, plans = source.module, source.base_spec, source.plans
    example = source.example(shape, args.input_dtype)
    task = build_task(task_config(args.task))
    calibration = _calibration(args.data, shape, task) if CRITERIA[cfg.criterion].needs_calibration else None
    macs_before, params_before = count_macs_params(model, example)
    widths_before = layer_widths(model)
    model, plan = prune(model, example, cfg, calibration=calibration)
    macs_after, params_after = count_macs_params(model, example)
    save_checkpoint(
        args.out, base_spec=base_spec, plans=[*plans, plan], model=model, input_shape=shape,
        input_dtype=args.input_dtype, metadata={"pruned_by": "spiralprune prune", "config": cfg.model_dump()},
    )
    out = console()
    totals = Table(title=f"{args.model}: {cfg.criterion} at ratio {cfg.ratio}")
    for column in ("", "before", "after", "kept"):
        totals.add_column(column, justify="right")
    for label, before, after in (("parameters", params_before, params_after), ("MACs", macs_before, macs_after)):
        totals.add_row(label, f"{before:,}", f"{after:,}", f"{after / before:.1%}")
    out.print(totals)
    layers = Table(title="pruned layers")
    for column in ("layer", "before", "after"):
        layers.add_column(column, justify="right" if column != "layer" else "left")
    for name, after in layer_widths(model).items():
        if widths_before.get(name) != after:
            layers.add_row(name, widths_before.get(name, "-"), after)
    out.print(layers)
    out.print(f"checkpoint: {args.out}")
    return ExitCode.OK


def layer_widths(model: nn.Module) -> dict[str, str]:
    """Output channels (heads, for attention; hidden units, for LSTMs) of every prunable layer."""
    from torch import nn

    from spiralprune.pipeline.prune.attention import SplitAttention

    projections = {
        proj for m in model.modules() if isinstance(m, SplitAttention) for proj in (m.q_proj, m.k_proj, m.v_proj)
    }
    widths = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.MultiheadAttention, SplitAttention)):
            widths[name] = f"{module.num_heads} heads"
        elif isinstance(module, nn.modules.conv._ConvNd):
            widths[name] = str(module.out_channels)
        elif isinstance(module, nn.Linear) and module not in projections:
            widths[name] = str(module.out_features)
        elif isinstance(module, nn.LSTM):
            widths[name] = str(module.hidden_size)
    return widths


def _calibration(source: str | None, shape: list[int], task: Task) -> Calibration:
    """Training batches of ``source`` drawn at random (seed 0, as a run with seed 0 draws them), scored with
    ``task``'s loss."""
    if source is None:
        raise InputError("taylor criteria need calibration data: pass --data (digits, an image folder or a factory)")
    from spiralprune.pipeline.data import load_datasets
    from spiralprune.pipeline.prune.group import draw_calibration

    train, _ = load_datasets(source, shape)
    return draw_calibration(train, 32, task.collate, task.batch_loss, seed=0)
