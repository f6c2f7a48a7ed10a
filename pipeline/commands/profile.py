"""``spiralprune profile MODEL --backend NAME``: measure a model's latency on this machine.

MODEL is an ONNX file, or a model spec / spiral checkpoint, exported here (the torch targets,
``torch`` and ``torch-compile``, run the module itself and need one of those).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import require_layer_backend
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.pipeline.commands import (
    add_backend_argument, add_batch_argument, add_precision_argument, add_torch_arguments, add_weights_argument,
    console, parse_shape,
)
from spiralprune.pipeline.exit_codes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from spiralprune.deploy.profiler import Profile

def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ProfileSettings()
    parser.add_argument("model", help="an .onnx file, a model spec or a spiral checkpoint directory")
    add_weights_argument(parser)
    parser.add_argument("--input-shape", help="input shape to export a model spec with, batch first, e.g. 1,3,224,224 "
                        "(default: the checkpoint's)")
    add_backend_argument(parser, default="ort-cpu")
    add_batch_argument(parser, default=[1], help="batch sizes, e.g. 1,8 (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    add_precision_argument(parser)
    add_torch_arguments(parser)
    parser.add_argument("--throughput", action="store_true", help="time whole calls by wall clock; show items/s")
    parser.add_argument("--json", type=Path, default=None, help="write the profile JSON here")
    parser.add_argument("--data", help="validation samples to feed when the graph's work depends on its inputs' values "
                                       "(non-maximum suppression in it, say): digits, an ImageFolder or package.module:factory")
    parser.add_argument(
        "--per-layer", action="store_true", help="also time each prunable layer alone across channel counts"
    )
    parser.add_argument(
        "--explain", action="store_true",
        help="also profile every layer (ONNX Runtime's node profiling, torch.profiler or TensorRT's IProfiler, between "
             "the rounds; trtexec's own profiling run) and say where the time goes: by layer and operator type, share "
             "of the end-to-end median, coverage, what dominates (ort-cpu, torch, torch-compile, tensorrt, trtexec)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="where compiled engines are kept")
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s,
                        help="warm-up seconds (default %(default)g)")
    parser.add_argument("--min-rounds", type=int, default=defaults.min_rounds,
                        help="minimum rounds of timed calls; sampling then stops once the round median is tight "
                             "(default %(default)d)")
    parser.add_argument("--max-duration", type=float, default=defaults.max_duration_s,
                        help="seconds of rounds per batch, at most (default %(default)g)")


def print_profile(profile: Profile, console: Console, throughput: bool) -> None:
    from rich.table import Table

    title = f"{profile.backend} · {Path(profile.model_path).name} · {profile.runner_settings.get('threads', '-')} threads"
    table = Table(title=title)
    columns = ["batch", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "mean ms", "robust CV %", "rounds", "samples", "stable",
               "stop"]
    if throughput:
        columns.insert(1, "items/s")
    for column in columns:
        table.add_column(column, justify="right")
    for m in profile.measurements:
        s = m.stats
        row = [str(m.batch)] + [f"{s[k]:.4f}" for k in ("p50", "p90", "p95", "p99", "mean")]
        row += [f"{100 * s['robust_cv']:.1f}", str(len(m.round_sizes)), str(len(m.samples_ms)),
                "yes" if m.stable else "[red]no[/]", m.stop_reason]
        if throughput:
            row.insert(1, f"{m.throughput_per_s:,.1f}")
        table.add_row(*row)
    console.print(table)
    gpu = profile.fingerprint.get("gpu")
    console.print(f"cpu: {profile.fingerprint['cpu']}" + (f" · gpu: {gpu['name']} (driver {gpu['driver']})" if gpu else ""))


def print_explanation(profile: Profile, console: Console) -> None:
    """Where the time goes, per batch: the slowest layers, the operator types, and what dominates."""
    from rich.table import Table

    from spiralprune.pipeline.report.attribution import EXPLAIN_HEADERS, OP_HEADERS, explain_rows, explain_summary, op_rows

    for m in profile.measurements:
        if m.layers is None:
            continue
        explanation = m.layers["explanation"]
        for title, headers, rows in (
            (f"where the time goes · batch {m.batch} · slowest layers", EXPLAIN_HEADERS, explain_rows(explanation)),
            (f"by operator type · batch {m.batch}", OP_HEADERS, op_rows(explanation)),
        ):
            table = Table(title=title)
            for i, header in enumerate(headers):
                table.add_column(header, justify="right" if i >= 3 or header == "layers" else "left")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        console.print(explain_summary(explanation))
        for line in explanation["findings"]:
            console.print(f"- {line}")


def run(args: argparse.Namespace) -> int:
    from spiralprune.deploy.profiler import profile_model
    from spiralprune.kernels.report import print_layer_tables
    from spiralprune.pipeline.gate.prepare import (
        data_feed, feed_note, measured_options, prepare_model, target_config, validation_set,
    )

    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be positive, got {args.threads}")
    if args.explain:
        require_layer_backend(args.backend)
    settings = ProfileSettings(
        warmup_s=args.warmup,
        min_rounds=args.min_rounds,
        min_duration_s=min(ProfileSettings().min_duration_s, args.max_duration),
        max_duration_s=args.max_duration,
        throughput=args.throughput,
    )
    target = target_config({"backend": args.backend, "threads": args.threads, "precision": args.precision,
                            "device": args.device, "compile_mode": args.compile_mode})
    shape = parse_shape(args.input_shape) if args.input_shape else None
    with tempfile.TemporaryDirectory(prefix="spiral-profile-") as work:
        prepared = prepare_model(args.model, Path(work), shape, weights=args.weights)
        feed = data_feed(prepared.onnx_path, validation_set(args.data, prepared.input_shape))
        profile = profile_model(
            prepared.onnx_path,
            args.backend,
            batch_sizes=args.batch,
            threads=args.threads,
            precision=args.precision,
            settings=settings,
            cache_dir=args.cache_dir,
            backend_options={**target.backend_options(), **measured_options(prepared, target)},
            layers=args.explain,
            inputs=feed,
        )
        print_profile(profile, console(), args.throughput)
        note = feed_note(profile.settings["data_dependent_ops"], feed)
        if note:
            console().print(note)
        if args.explain:
            print_explanation(profile, console())
        if args.per_layer:
            print_layer_tables(
                prepared.onnx_path, args.backend, args.threads, precision=args.precision, batch=args.batch[0],
                console=console(), options=target.backend_options(),
            )
    if args.json is not None:
        profile.save(args.json)
        console().print(f"profile: {args.json}")
    return ExitCode.OK
