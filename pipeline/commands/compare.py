"""``spiral compare BASE.json NEW.json`` or ``spiral compare HISTORY_DIR``: latency regression detection."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy.errors import InputError
from pipeline.compare.history import build_history
from pipeline.compare.profiles import compare_profiles
from pipeline.compare.releases import load_history, load_release
from pipeline.compare.report import (
    comparison_html,
    comparison_json,
    comparison_markdown,
    headline,
    history_html,
    history_json,
    history_markdown,
)
from pipeline.compare.stats import COMPARED_STATS, CompareSettings
from pipeline.report.outputs import write_outputs

NAME = "compare"
HELP = "compare two latency profiles or reports for a regression, or draw the trend of a directory of releases"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="BASE.json NEW.json (profiles, gate reports or run reports), or HISTORY_DIR holding them")
    parser.add_argument("--statistic", choices=COMPARED_STATS, default="p50", help="the statistic that decides (default p50)")
    parser.add_argument("--min-effect", type=float, default=5.0, help="smallest change in %% that counts (default 5)")
    parser.add_argument("--alpha", type=float, default=0.01, help="significance level of the U test and CI (default 0.01)")
    parser.add_argument("--max-cv", type=float, default=0.10, help="coefficient of variation above which a measurement is unstable (default 0.10)")
    parser.add_argument("--batch", type=int, help="compare only this batch size")
    parser.add_argument("--json", type=Path, help="write the comparison as JSON")
    parser.add_argument("--markdown", type=Path, help="write a Markdown summary for a pull-request comment")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report with plots")


def run(args: argparse.Namespace) -> int:
    settings = CompareSettings(min_effect_pct=args.min_effect, alpha=args.alpha, max_cv=args.max_cv)
    if len(args.paths) == 1:
        history = build_history(load_history(args.paths[0]), settings, statistic=args.statistic, batch=args.batch)
        print(history_markdown(history), end="")
        outputs = [
            (args.json, lambda: history_json(history)),
            (args.markdown, lambda: history_markdown(history)),
            (args.html, lambda: history_html(history)),
        ]
        code = history.exit_code
    elif len(args.paths) == 2:
        base, new = (load_release(p) for p in args.paths)
        comparison = compare_profiles(base.profile, new.profile, settings, statistic=args.statistic, batch=args.batch)
        print(comparison_markdown(comparison, base, new), end="")
        outputs = [
            (args.json, lambda: comparison_json(comparison, base, new)),
            (args.markdown, lambda: comparison_markdown(comparison, base, new)),
            (args.html, lambda: comparison_html(comparison, base, new)),
        ]
        code = comparison.exit_code
        print(f"spiral compare: {headline(comparison)}")
    else:
        raise InputError("give two profiles or reports (BASE.json NEW.json), or one directory of past releases")
    for path in write_outputs(outputs):
        print(f"wrote {path}")
    return code
