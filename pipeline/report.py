"""Run reports: ``report.json`` (versioned) and ``report.md`` (sized for a pull-request comment)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.atomic import write_json, write_text
from pipeline.config import RunConfig

REPORT_SCHEMA_VERSION = 1


def step_rows(teacher: dict, entries: list[dict]) -> list[dict]:
    """One row per model: the teacher, then every attempted step in order."""
    rows = [{"name": "teacher", "verdict": "baseline", "reason": "", "speedup": 1.0, **teacher}]
    for e in entries:
        rows.append(
            {"name": f"step {e['step']} try {e['attempt']}", "verdict": "accepted" if e["accepted"] else "rejected", **e}
        )
    return rows


def best_accepted(entries: list[dict]) -> dict | None:
    accepted = [e for e in entries if e["accepted"]]
    return accepted[-1] if accepted else None


def render_markdown(config: RunConfig, budget: dict, teacher: dict, entries: list[dict], message: str) -> str:
    stat = budget["statistic"]
    lines = [
        f"## spiral: {config.model} on {config.target.backend}",
        "",
        f"Final budget: {stat} <= {budget['final_ms']:.3f} ms (teacher {budget['teacher_ms']:.3f} ms), "
        f"accuracy >= {budget['accuracy_floor']:.2f}% (teacher {budget['teacher_accuracy']:.2f}%).",
        f"Outcome: {message}.",
        "",
        "| model | p50 ms | p90 ms | speedup | accuracy % | params | MACs | verdict | why |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in step_rows(teacher, entries):
        lines.append(
            f"| {row['name']} | {row['latency_ms']['p50']:.3f} | {row['latency_ms']['p90']:.3f} | "
            f"{row['speedup']:.2f}x | {100 * row['accuracy']:.2f} | {row['params']:,} | {row['macs']:,} | "
            f"{row['verdict']} | {row['reason']} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(
    out: Path, config: RunConfig, budget: dict, teacher: dict, entries: list[dict], message: str
) -> list[Path]:
    best = best_accepted(entries)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.model_dump(mode="json"),
        "budget": budget,
        "teacher": teacher,
        "steps": entries,
        "best": best,
        "met_budget": bool(best) and best["statistic_ms"] <= budget["final_ms"],
        "message": message,
    }
    paths = [out / "report.json", out / "report.md"]
    write_json(paths[0], report)
    write_text(paths[1], render_markdown(config, budget, teacher, entries, message))
    return paths
