"""``spiral gate MODEL --target T --budget BUDGET.yaml [--baseline-model RELEASED]``: the CI gate for a model release.

With ``--baseline-model`` the released model is measured beside the candidate, in alternating
rounds in this process, and the regression limit is judged on the per-round ratios. A stored
``--baseline`` JSON from another run is compared only when it was measured on the same target, with
its interval widened by ``latency.between_run_tolerance``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spiral.deploy.backends import BACKENDS, get_backend
from spiral.deploy.errors import InputError
from spiral.deploy.profiler import Target, profile_model, profile_paired
from spiral.deploy.verdict import Verdict
from spiral.deploy.target_profiles import ALIASES, list_targets
from spiral.pipeline.compare.releases import Release, load_release
from spiral.pipeline.data import load_datasets
from spiral.pipeline.evaluate import evaluate_onnx
from spiral.pipeline.export import check_parity
from spiral.pipeline.config import ParityConfig
from spiral.pipeline.gate.budget import load_budget
from spiral.pipeline.gate.candidate import (
    add_torch_arguments, measured_options, onnx_num_classes, onnx_params, parity_inputs, parse_shape,
    prepare_candidate, target_config,
)
from spiral.pipeline.gate.checks import BASELINE, CANDIDATE, latency_questions, run_gate
from spiral.pipeline.gate.report import GateContext, gate_html, gate_json, gate_junit, gate_markdown
from spiral.pipeline.report.outputs import write_outputs

NAME = "gate"
HELP = "gate a model release on its latency, accuracy, size and ONNX parity budget"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file, a model spec or a spiral checkpoint directory")
    parser.add_argument("--target", required=True,
                        help=f"the backend that measures on this machine: {', '.join(BACKENDS)}")
    parser.add_argument("--budget", required=True, type=Path, help="the release budget (YAML)")
    parser.add_argument("--baseline-model",
                        help="the last release as a model (.onnx, model spec or checkpoint), measured beside the "
                             "candidate in this job: the recommended baseline")
    parser.add_argument("--baseline", type=Path,
                        help="the last release as a stored profile, gate report or run report (JSON) measured on "
                             "this same target; its latency is compared with a between-run tolerance")
    parser.add_argument("--data", help="evaluation data for accuracy: digits, an ImageFolder directory or package.module:factory")
    parser.add_argument("--input-shape", help="input shape with the batch first, e.g. 1,3,224,224 "
                        "(default: the ONNX input's or the checkpoint's; a model spec needs it)")
    parser.add_argument("--threads", type=int, help="CPU threads for the target (default: the backend's)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                        help="precision the backend builds the model in (default fp32)")
    add_torch_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the gate report as JSON (a later gate's --baseline)")
    parser.add_argument("--markdown", type=Path, help="write a Markdown summary for a pull-request comment")
    parser.add_argument("--junit", type=Path, help="write JUnit XML, one test case per check")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with plots")


def run(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget)
    if args.baseline and args.baseline_model:
        raise InputError("give one baseline: --baseline-model (measured here, recommended) or --baseline (stored JSON)")
    baseline = load_release(args.baseline) if args.baseline else None
    if baseline is None and args.baseline_model is None and budget.needs_baseline:
        raise InputError(f"the budget's {', '.join(budget.needs_baseline)} compares against a baseline; "
                         "pass --baseline-model (the released model, measured here) or --baseline (a stored JSON)")
    if budget.accuracy is not None and not args.data:
        raise InputError("the budget has an accuracy check; pass --data with the evaluation data")
    if args.target in ALIASES or args.target in list_targets():
        raise InputError(
            f"'{args.target}' is a device target: spiral gate measures on this machine with a backend "
            f"({', '.join(BACKENDS)}); to measure on the device and gate there, run "
            f"spiral deploy MODEL --target {args.target}"
        )
    get_backend(args.target)
    target_cfg = target_config(args.target, threads=args.threads, precision=args.precision, device=args.device,
                               compile_mode=args.compile_mode)
    input_shape = parse_shape(args.input_shape) if args.input_shape else None

    with tempfile.TemporaryDirectory(prefix="spiral-gate-") as work:
        candidate = prepare_candidate(args.model, Path(work) / CANDIDATE, input_shape)
        onnx_path, shape = candidate.onnx_path, candidate.input_shape
        options = {CANDIDATE: measured_options(candidate, target_cfg)}
        released = None
        if args.baseline_model is not None:
            release = prepare_candidate(args.baseline_model, Path(work) / BASELINE, shape)
            released, options[BASELINE] = release.onnx_path, measured_options(release, target_cfg)
        val_set = None
        if args.data:
            val_set = load_datasets(args.data, shape)[1]
            if len(val_set) == 0:
                raise InputError(f"data '{args.data}' has an empty validation split")
            sample_shape = list(val_set[0][0].shape)
            if sample_shape != shape[1:]:
                raise InputError(f"the data's samples have shape {sample_shape}; the model takes {shape[1:]}")
        parity = None
        if candidate.source is not None:
            limits = budget.parity or ParityConfig()
            parity = check_parity(
                candidate.source, onnx_path,
                parity_inputs(shape, val_set, limits.samples, dtype=candidate.input_dtype, model=candidate.source),
                atol=limits.atol, min_top1_agreement=limits.min_top1_agreement,
            )
        compiled = Path(work) / "compiled"
        verdicts: dict[str, Verdict] = {}
        if released is None:  # alone, as spiral profile measures (self-timing backends such as trtexec too)
            profile = profile_model(onnx_path, args.target, batch_sizes=(shape[0],), threads=args.threads,
                                    precision=args.precision, settings=budget.profile, cache_dir=compiled,
                                    backend_options={**target_cfg.backend_options(), **options[CANDIDATE]})
        else:  # the released model beside the candidate, in the same rounds, until the questions are decided
            target = Target(args.target, shape[0], args.threads, args.precision, target_cfg.backend_options())
            measured = profile_paired({CANDIDATE: onnx_path, BASELINE: released}, target, budget.profile,
                                      latency_questions(budget, baseline_measured=True), cache_dir=compiled,
                                      model_options=options)
            profile = measured.profiles[CANDIDATE]
            verdicts = {v.question.name: v for v in measured.verdicts}
        metrics = evaluate_onnx(onnx_path, val_set, onnx_num_classes(onnx_path)) if val_set is not None else None
        if released is not None:
            released_metrics = (evaluate_onnx(released, val_set, onnx_num_classes(released))
                                if val_set is not None else None)
            baseline = Release(Path(args.baseline_model).stem, Path(args.baseline_model), measured.profiles[BASELINE],
                               released_metrics, None)
        size_mb, params = onnx_path.stat().st_size / 1e6, onnx_params(onnx_path)

    result = run_gate(
        budget, profile=profile, baseline=baseline.profile if baseline else None, paired=released is not None,
        verdicts=verdicts, metrics=metrics, baseline_metrics=baseline.metrics if baseline else None,
        model_size_mb=size_mb, params=params, parity=parity,
    )
    context = GateContext(args.model, args.target, profile, baseline, metrics, size_mb, params, parity)
    for check in result.checks:
        print(check.line())
    for note in result.notes:
        print(note)
    written = write_outputs([
        (args.json, lambda: gate_json(result, context)),
        (args.markdown, lambda: gate_markdown(result, context)),
        (args.junit, lambda: gate_junit(result)),
        (args.html, lambda: gate_html(result, context)),
    ])
    for path in written:
        print(f"wrote {path}")
    verdict = "passed" if result.passed else f"failed: {len(result.problems)} of {len(result.checks)} checks did not pass"
    print(f"spiral gate {verdict}")
    return result.exit_code
