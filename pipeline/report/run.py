"""A spiralprune run's reports: ``report.json`` (versioned), ``report.md`` (a pull-request comment) and
``report.html`` (plots), all rendered from the one report dictionary, so ``spiralprune report`` can
render any finished run again from its ``report.json`` and ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spiralprune import __version__
from spiralprune.core.atomic import write_json, write_text
from spiralprune.core.errors import InputError
from spiralprune.deploy.profiler import Profile
from spiralprune.pipeline.acceptance import Check
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.report import plots
from spiralprune.pipeline.report.attribution import explain_html, explain_markdown
from spiralprune.pipeline.report.checks import checks_html, checks_markdown
from spiralprune.pipeline.report.html import esc, html_page, html_plot, html_table
from spiralprune.pipeline.report.junit import TestCase, junit_xml
from spiralprune.pipeline.report.markdown import md_table
from spiralprune.pipeline.run_folder import RUN_REPORT_KIND, RunFolder, last_accepted
from spiralprune.pipeline.tasks.metric import Metric

if TYPE_CHECKING:
    from spiralprune.pipeline.config import RunConfig

REPORT_SCHEMA_VERSION = 1


def step_columns(budget: dict) -> tuple[str, ...]:
    """The step table's columns; the quality column names the budget's metric (``accuracy %``, ``miou %``)."""
    return ("model", "p50 ms", "p90 ms", "predicted ms", "speedup", Metric(**budget["metric"]).label,
            "params", "MACs", "verdict", "why")


def shown_quality(row: dict, budget: dict) -> float:
    """A row's (the teacher's, a ledger line's) value of the budget's metric, as shown."""
    metric = budget["metric"]
    return metric["scale"] * row["metrics"].get(metric["name"], row["quality"])


def step_rows(teacher: dict, steps: list[dict]) -> list[dict]:
    """One row per model: the teacher, then every attempted step in order (``LedgerEntry.to_json``)."""
    rows = [{"name": "teacher", "verdict": "baseline", "reason": "", "speedup": 1.0, **teacher}]
    rows += [{"verdict": "accepted" if e["accepted"] else "rejected", **e} for e in steps]
    return rows


def met_budget(best: LedgerEntry | None) -> bool:
    """Whether the best accepted step met the final budget, as the judge decided when it was measured."""
    return best is not None and best.meets_final


def build_report(config: dict, budget: dict, teacher: dict, entries: list[LedgerEntry], message: str,
                 run_dir: Path) -> dict:
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": RUN_REPORT_KIND,
        "spiral": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "budget": budget,
        "teacher": teacher,
        "message": message,
    }
    return {**report, **_steps(entries, run_dir)}


def _steps(entries: list[LedgerEntry], run_dir: Path) -> dict:
    """A report's steps, its best (last accepted) step, whether that met the final budget, and where
    the best step's time goes."""
    best = last_accepted(entries)
    return {"steps": [e.to_json() for e in entries], "best": best.to_json() if best else None,
            "met_budget": met_budget(best), "layers": result_layers(entries, run_dir)}


def result_layers(entries: list[LedgerEntry], run_dir: Path) -> dict | None:
    """Where the time of the run's result goes: the explanation of its measured per-layer profile (its
    step folder's ``profile.json``; ``spiralprune.pipeline.report.attribution`` renders it) and, for the plan
    that made its structure, each layer's predicted time (the latency table's, as the search calibrated
    it) beside the measured one where both exist, largest difference first (no ratio where the table
    left nothing once its per-call overhead is taken off). An INT8 result has no prediction (the table
    times float operators); None when the result was not profiled by layer (a teacher, an older run)."""
    best = last_accepted(entries)
    path = RunFolder(run_dir).of(best, "profile.json") if best is not None else None
    if path is None or not path.is_file():
        return None
    layers = Profile.load(path).measurement().layers
    if layers is None:
        return None
    explanation = layers["explanation"]
    plan = next((e for e in reversed(entries) if e.accepted and e.kind == "step"), None)
    predicted_ms = plan.predicted_layers if plan is not None and best.kind != "quantize" else {}
    predicted = [{"name": r["name"], "predicted_ms": predicted_ms[r["name"]], "measured_ms": r["ms"],
                  "ratio": r["ms"] / predicted_ms[r["name"]] if predicted_ms[r["name"]] > 0 else None}
                 for r in explanation["layers"] if r["name"] in predicted_ms]
    predicted.sort(key=lambda r: -abs(r["measured_ms"] - r["predicted_ms"]))
    return {"model": best.name, "explanation": explanation, "predicted": predicted}


def step_cells(row: dict, budget: dict) -> list[str]:
    """One row of ``step_columns``, as text."""
    return [
        row["name"], f"{row['latency_ms']['p50']:.3f}", f"{row['latency_ms']['p90']:.3f}",
        f"{row['predicted_ms']:.3f}" if row.get("predicted_ms") is not None else "",
        # no paired round ran on a free CPU: the judge has no ratio (its verdict says undecided)
        f"{row['speedup']:.2f}x" if math.isfinite(row["speedup"]) else "n/a",
        f"{shown_quality(row, budget):.4g}", f"{row['params']:,}", f"{row['macs']:,}", row["verdict"], row["reason"],
    ]


def _headline(report: dict) -> tuple[str, str, str]:
    config, budget = report["config"], report["budget"]
    title = f"spiralprune: {config['model']} on {config['target']['backend']}"
    target = f"Final budget: {budget['final']} (teacher {budget['statistic']} {budget['teacher_ms']:.3f} ms)."
    return title, target, f"Outcome: {report['message']}."


def render_markdown(report: dict) -> str:
    title, target, outcome = _headline(report)
    rows = [step_cells(r, report["budget"]) for r in step_rows(report["teacher"], report["steps"])]
    lines = [f"## {title}", "", target, outcome, "", *md_table(step_columns(report["budget"]), rows, "lrrrrrrrll")]
    for name, verdict, checks in step_checks(report["steps"]):
        lines += ["", f"### {name}: {verdict}", "", *checks_markdown(checks)]
    lines += explain_markdown(report.get("layers"))
    return "\n".join(lines) + "\n"


def step_checks(steps: list[dict]) -> list[tuple[str, str, list[Check]]]:
    """Each try's, the recovery's and the INT8 stage's checks (``spiralprune.pipeline.acceptance``) with its
    verdict; a ledger line from before checks were kept has none to show."""
    return [(e["name"], "accepted" if e["accepted"] else "rejected", [Check.from_dict(c) for c in e["checks"]])
            for e in steps if e.get("checks")]


def _step_profiles(report: dict, run_dir: Path) -> list[tuple[str, Profile]]:
    """(row name, profile) of the teacher and every step whose ``profile.json`` is still there."""
    found = []
    dirs = [("teacher", "teacher")] + [(e["name"], e["dir"]) for e in report["steps"]]
    for name, directory in dirs:
        path = run_dir / directory / "profile.json"
        if path.is_file():
            found.append((name, Profile.load(path)))
    return found


def render_html(report: dict, run_dir: Path) -> str:
    title, target, outcome = _headline(report)
    rows = step_rows(report["teacher"], report["steps"])
    classes = [{"accepted": "pass", "rejected": "fail"}.get(r["verdict"], "") for r in rows]
    sections = [
        f"<p>{esc(target)}</p>",
        f'<p class="verdict {"pass" if report["met_budget"] else "fail"}">{esc(outcome)}</p>',
        "<h2>Steps</h2>",
        html_table(step_columns(report["budget"]), [step_cells(r, report["budget"]) for r in rows], numeric=range(1, 8),
                   row_classes=classes),
    ]
    checked = step_checks(report["steps"])
    if checked:
        sections.append("<h2>Checks of each model judged</h2>")
    for name, verdict, checks in checked:
        sections += [f"<h3>{esc(name)}: {verdict}</h3>", checks_html(checks)]
    screened = [e for e in report["steps"] if e.get("plans")]
    if screened:
        sections.append("<h2>Screened plans (predicted, and measured where compiled)</h2>")
    for e in screened:
        plans = e["plans"]
        cells = [
            [f"{c['ratio']:.1%}", str(c.get("blocks", 0)), f"{c['predicted_ms']:.3f}",
             "" if c["ms"] is None else f"{c['ms']:.3f}"]
            for c in plans
        ]
        removed = f" and residual blocks {', '.join(e['blocks'])}" if e.get("blocks") else ""
        sections += [
            f"<h3>Step {e['step']} try {e['attempt']}: {len(plans)} {esc(e.get('allocation', ''))} plans "
            f"for {e['goal_ms']:.3f} ms, chosen {e['ratio']:.1%}{esc(removed)}</h3>",
            html_table(("channels removed", "blocks removed", "predicted ms", "measured ms"), cells, numeric=range(4)),
        ]
    sections += explain_html(report.get("layers"))  # none in a report.json from before it
    profiles = _step_profiles(report, run_dir)
    if profiles:
        series = [(name, p.measurements[0].samples_ms) for name, p in profiles]
        sections += ["<h2>Latency distribution of each step</h2>",
                     html_plot(plots.latency_distributions(series, "measured latency"), "latency distributions")]
    points = [
        plots.ParetoPoint(
            r["name"], r["statistic_ms"], shown_quality(r, report["budget"]),
            "baseline" if r["verdict"] == "baseline" else r["verdict"],
        )
        for r in rows
    ]
    statistic, metric = report["budget"]["statistic"], report["budget"]["metric"]
    label = f"{metric['name']} ({metric['unit']})" if metric["unit"] else metric["name"]
    sections += [f"<h2>{esc(metric['name'])} vs latency</h2>",
                 html_plot(plots.pareto_front(points, statistic, label, metric["higher_is_better"]),
                           f"{metric['name']} vs latency Pareto front")]
    return html_page(title, sections)


def render_junit(report: dict) -> str:
    """A test case per attempted step (a rejected try is ``skipped``: the search retries it) and one
    for the final budget, which fails when no accepted step met it."""
    cases = [
        TestCase(e["name"], "spiral.run.steps",
                 "pass" if e["accepted"] else "skipped", "" if e["accepted"] else e["reason"], e["reason"])
        for e in report["steps"]
    ]
    cases.append(
        TestCase("final budget", "spiral.run", "pass" if report["met_budget"] else "fail", report["message"], report["message"])
    )
    return junit_xml("spiralprune run", cases)


def write_reports(
    out: Path, config: RunConfig, budget: dict, teacher: dict, entries: list[LedgerEntry], message: str
) -> list[Path]:
    report = build_report(config.model_dump(mode="json"), budget, teacher, entries, message, out)
    paths = [RunFolder(out).report, out / "report.md", out / "report.html"]
    write_json(paths[0], report)
    write_text(paths[1], render_markdown(report))
    write_text(paths[2], render_html(report, out))
    return paths


def load_run(run_dir: Path) -> dict[str, Any]:
    """A finished run's report, its steps re-read from the ledger (the record every step is written to)."""
    folder = RunFolder(run_dir)
    path = folder.report
    if not path.is_file():
        raise InputError(f"{run_dir} has no report.json: it is not a finished spiralprune run")
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise InputError(f"{path}: not a spiralprune run report of schema version {REPORT_SCHEMA_VERSION}")
    if folder.ledger.is_file():
        report.update(_steps(folder.entries(), run_dir))
    return report
