"""``spiralprune report RUN_DIR``: render a finished spiralprune run (report.json + ledger) as Markdown, HTML and JUnit XML."""

from __future__ import annotations

import argparse
from pathlib import Path

from spiralprune.pipeline.exit_codes import of_run
from spiralprune.pipeline.report.outputs import write_outputs



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a spiralprune run directory (holding report.json and ledger.jsonl)")
    parser.add_argument("--markdown", type=Path, help="Markdown output (default: RUN_DIR/report.md)")
    parser.add_argument("--html", type=Path, help="HTML output (default: RUN_DIR/report.html)")
    parser.add_argument("--junit", type=Path, help="JUnit XML output (default: RUN_DIR/report.junit.xml)")


def run(args: argparse.Namespace) -> int:
    """Writes the outputs asked for, or all three into the run directory when none is; exits with the run's verdict."""
    from spiralprune.pipeline.report.run import load_run, render_html, render_junit, render_markdown

    report = load_run(args.run_dir)
    paths = [args.markdown, args.html, args.junit]
    if not any(paths):
        paths = [args.run_dir / name for name in ("report.md", "report.html", "report.junit.xml")]
    written = write_outputs([
        (paths[0], lambda: render_markdown(report)),
        (paths[1], lambda: render_html(report, args.run_dir)),
        (paths[2], lambda: render_junit(report)),
    ])
    print(render_markdown(report), end="")
    for path in written:
        print(f"wrote {path}")
    return of_run(report["met_budget"], report["steps"])
