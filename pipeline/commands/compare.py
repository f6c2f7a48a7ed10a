"""``spiralprune compare BASE.onnx NEW.onnx``, ``spiralprune compare BASE.json NEW.json`` or ``spiralprune compare HISTORY_DIR``:
latency regression detection."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import BACKENDS
from spiralprune.deploy.budget import LatencyBudget
from spiralprune.deploy.layer_profile import LAYER_BACKENDS
from spiralprune.deploy.profiler import Profile, Target, profile_paired
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.verdict import STATISTICS
from spiralprune.pipeline.commands import add_backend_argument, add_batch_argument, add_precision_argument
from spiralprune.pipeline.compare.history import build_history
from spiralprune.pipeline.compare.profiles import (
    BASE, NEW, REGRESSION_BUDGET, compare_runs, paired_comparison, regression_budget, regression_question,
)
from spiralprune.pipeline.compare.releases import Release, load_history, load_release
from spiralprune.pipeline.compare.report import (
    comparison_html,
    comparison_json,
    comparison_markdown,
    headline,
    history_html,
    history_json,
    history_markdown,
)
from spiralprune.pipeline.exit_codes import ExitCode
from spiralprune.pipeline.report.outputs import write_outputs

DESCRIPTION = f"""\
Three ways to call it:

  spiralprune compare BASE.onnx NEW.onnx   (recommended) loads both models once on this machine and
                                      alternates them in rounds; the verdict rests on the per-round
                                      ratios, so whatever the machine does touches both alike.
  spiralprune compare BASE.json NEW.json   two profiles (or gate / run reports) from separate runs on the
                                      same target; what moves between runs (about +-7 % here) widens
                                      the interval by --tolerance, so small changes come out
                                      inconclusive: re-measure both paired to settle them.
  spiralprune compare HISTORY_DIR          the trend of past releases, and the newest against the one before.

A regression exits {ExitCode.AGAINST:d}; an inconclusive comparison exits {ExitCode.UNDECIDED:d} (undecided), and so
does a history whose newest two releases were measured on different targets; two profiles
measured on different targets are bad input ({ExitCode.BAD_INPUT:d})."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    defaults, budget = ProfileSettings(), REGRESSION_BUDGET
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="BASE.onnx NEW.onnx, BASE.json NEW.json (profiles, gate reports or run reports), "
                             "or HISTORY_DIR holding such JSON files")
    parser.add_argument("--statistic", choices=STATISTICS, default=budget.statistic,
                        help="the statistic that decides (a latency budget's statistic; default p50)")
    parser.add_argument("--min-effect", type=float, default=budget.max_regression_pct,
                        help="a regression is a change surely above +this %% (a latency budget's max_regression_pct), "
                             "an improvement one surely below -this %% (default %(default)g)")
    parser.add_argument("--confidence", type=float, default=defaults.confidence,
                        help="confidence of the interval (default %(default)g)")
    parser.add_argument("--tolerance", type=float, default=budget.between_run_tolerance,
                        help="two JSON profiles only: relative widening for what moves between separate runs "
                             "(a latency budget's between_run_tolerance; default %(default)g)")
    add_batch_argument(parser, help="batch sizes to measure (two ONNX models; default 1) or to compare (profiles; "
                                    "default: every shared one), each judged on its own, the worst verdict decides; "
                                    "a history's trend is drawn at one")
    paired = parser.add_argument_group("two ONNX models, measured paired on this machine")
    add_backend_argument(paired, default="ort-cpu", choices=BACKENDS)
    paired.add_argument("--threads", type=int, help="CPU threads (default: the backend's)")
    add_precision_argument(paired)
    paired.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer profile that attributes the change to layers "
                             f"(taken between the judged rounds on {', '.join(LAYER_BACKENDS)})")
    paired.add_argument("--max-duration", type=float, default=defaults.max_duration_s,
                        help="seconds of rounds at most; sampling stops earlier once the verdict is decided "
                             "(default %(default)g)")
    parser.add_argument("--json", type=Path, help="write the comparison as JSON")
    parser.add_argument("--markdown", type=Path, help="write a Markdown summary for a pull-request comment")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with plots")


def _measure_paired(args: argparse.Namespace, budget: LatencyBudget, settings: ProfileSettings,
                    batches: list[int]) -> tuple:
    """Both models measured paired at each of ``batches`` (one session per batch, the layers profiled at
    the first), judged batch by batch."""
    base_path, new_path = args.paths
    for path in args.paths:
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be positive, got {args.threads}")
    settings = dataclasses.replace(settings, max_duration_s=args.max_duration,
                                   min_duration_s=min(settings.min_duration_s, args.max_duration))
    layers = (BASE, NEW) if args.backend in LAYER_BACKENDS and not args.no_layers else ()
    profiles: dict[str, Profile] = {}
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="spiral-compare-") as cache:
        for batch in batches:
            question = regression_question(budget, batch)
            paired = profile_paired({BASE: base_path, NEW: new_path}, Target(args.backend, batch, args.threads,
                                                                               args.precision),
                                    settings, [question], cache_dir=Path(cache), layers=() if profiles else layers)
            verdicts[batch] = paired.verdict(question.name)
            for name, profile in paired.profiles.items():
                held = profiles.get(name)
                profiles[name] = profile if held is None else dataclasses.replace(
                    held, measurements=[*held.measurements, *profile.measurements])
    labels = (str(base_path), str(new_path)) if base_path.stem == new_path.stem else (base_path.stem, new_path.stem)
    base = Release(labels[0], base_path, profiles[BASE], None, None)
    new = Release(labels[1], new_path, profiles[NEW], None, None)
    return base, new, paired_comparison(base.profile, new.profile, verdicts, budget, settings)


def run(args: argparse.Namespace) -> int:
    budget = regression_budget(
        {"statistic": args.statistic, "max_regression_pct": args.min_effect, "between_run_tolerance": args.tolerance},
        "the latency budget (--min-effect: max_regression_pct, --tolerance: between_run_tolerance)")
    settings = ProfileSettings(confidence=args.confidence)
    if len(args.paths) == 1:
        if args.batch is not None and len(args.batch) > 1:
            raise InputError(f"--batch {','.join(map(str, args.batch))}: a history's trend is drawn at one batch size; "
                             "give one")
        history = build_history(load_history(args.paths[0]), budget, settings, batch=args.batch[0] if args.batch else None)
        print(history_markdown(history), end="")
        outputs = [
            (args.json, lambda: history_json(history)),
            (args.markdown, lambda: history_markdown(history)),
            (args.html, lambda: history_html(history)),
        ]
        code = history.exit_code
    elif len(args.paths) == 2:
        onnx = [p.suffix == ".onnx" for p in args.paths]
        if all(onnx):
            base, new, comparison = _measure_paired(args, budget, settings, args.batch or [1])
        elif any(onnx):
            raise InputError("give two ONNX models (measured paired here) or two JSON profiles, not one of each")
        else:
            base, new = (load_release(p) for p in args.paths)
            comparison = compare_runs(base.profile, new.profile, budget, settings, batches=args.batch)
        print(comparison_markdown(comparison, base, new), end="")
        outputs = [
            (args.json, lambda: comparison_json(comparison, base, new)),
            (args.markdown, lambda: comparison_markdown(comparison, base, new)),
            (args.html, lambda: comparison_html(comparison, base, new)),
        ]
        code = comparison.exit_code
        print(f"spiralprune compare ({comparison.kind_label}): {headline(comparison)}")
    else:
        raise InputError("give two ONNX models, two profiles or reports (BASE.json NEW.json), "
                         "or one directory of past releases")
    for path in write_outputs(outputs):
        print(f"wrote {path}")
    return code
