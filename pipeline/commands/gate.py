"""``spiralprune gate MODEL --backend B --budget BUDGET.yaml [--baseline-model RELEASED]``: the CI gate for a model release.

With ``--baseline-model`` the released model is measured beside the candidate, in alternating
rounds in this process, and the regression limit is judged on the per-round ratios. A stored
``--baseline`` JSON from another run is compared only when it was measured on the same target, with
its interval widened by ``latency.between_run_tolerance``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError
from spiralprune.pipeline.commands import (
    add_backend_argument, add_precision_argument, add_torch_arguments, add_weights_argument, parse_shape,
)
from spiralprune.pipeline.exit_codes import ExitCode

if TYPE_CHECKING:
    from spiralprune.pipeline.gate.checks import GateResult

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file, a model spec or a spiral checkpoint directory")
    add_weights_argument(parser)
    add_backend_argument(parser, required=True)
    parser.add_argument("--budget", required=True, type=Path, help="the release budget (YAML)")
    parser.add_argument("--baseline-model",
                        help="the last release as a model (.onnx, model spec or checkpoint), measured beside the "
                             "candidate in this job: the recommended baseline")
    parser.add_argument("--baseline", type=Path,
                        help="the last release as a stored profile, gate report or run report (JSON) measured on "
                             "this same backend and machine; its latency is compared with a between-run tolerance")
    parser.add_argument("--data", help="evaluation data for accuracy: digits, an ImageFolder directory or package.module:factory")
    parser.add_argument("--input-shape", help="input shape with the batch first, e.g. 1,3,224,224 "
                        "(default: the ONNX input's or the checkpoint's; a model spec needs it)")
    parser.add_argument("--threads", type=int, help="CPU threads for the target (default: the backend's)")
    add_precision_argument(parser)
    add_torch_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the gate report as JSON (a later gate's --baseline)")
    parser.add_argument("--markdown", type=Path, help="write a Markdown summary for a pull-request comment")
    parser.add_argument("--junit", type=Path, help="write JUnit XML, one test case per check")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with plots")


def summary(result: GateResult) -> str:
    """``passed``, or ``failed`` / ``undecided`` with how many of the checks did not pass."""
    if result.passed:
        return "passed"
    word = "undecided" if result.exit_code == ExitCode.UNDECIDED else "failed"
    return f"{word}: {len(result.problems)} of {len(result.checks)} checks did not pass"


def run(args: argparse.Namespace) -> int:
    from spiralprune.pipeline.api import gate
    from spiralprune.pipeline.compare.releases import load_release
    from spiralprune.pipeline.gate.budget import load_budget
    from spiralprune.pipeline.gate.report import gate_html, gate_json, gate_junit, gate_markdown
    from spiralprune.pipeline.report.attribution import change_summary
    from spiralprune.pipeline.report.outputs import write_outputs

    if args.baseline and args.baseline_model:
        raise InputError("give one baseline: --baseline-model (measured here, recommended) or --baseline (stored JSON)")
    target = {"backend": args.backend, "threads": args.threads, "precision": args.precision, "device": args.device,
              "compile_mode": args.compile_mode}
    result, context = gate(
        args.model, load_budget(args.budget), target=target, weights=args.weights,
        baseline=args.baseline_model or (load_release(args.baseline) if args.baseline else None), data=args.data,
        input_shape=parse_shape(args.input_shape) if args.input_shape else None,
    )
    for check in result.checks:
        print(check.line())
    for note in result.notes:
        print(note)
    if result.attribution is not None:
        print(f"which layers account for the change: {change_summary(result.attribution)}")
    written = write_outputs([
        (args.json, lambda: gate_json(result, context)),
        (args.markdown, lambda: gate_markdown(result, context)),
        (args.junit, lambda: gate_junit(result)),
        (args.html, lambda: gate_html(result, context)),
    ])
    for path in written:
        print(f"wrote {path}")
    print(f"spiralprune gate {summary(result)}")
    return result.exit_code
