"""``spiralprune gate`` reports: versioned JSON (which later gates take as ``--baseline``), Markdown for a
pull-request comment, JUnit XML (one test case per check) and a self-contained HTML page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from spiralprune import __version__
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.profiler import Profile
from spiralprune.pipeline.compare.releases import GATE_REPORT_KIND, Release
from spiralprune.pipeline.export import ParityResult
from spiralprune.pipeline.gate.checks import GateResult
from spiralprune.pipeline.report import plots
from spiralprune.pipeline.report.attribution import change_html, change_markdown
from spiralprune.pipeline.report.checks import checks_html, checks_markdown
from spiralprune.pipeline.report.html import esc, html_page, html_plot
from spiralprune.pipeline.report.junit import TestCase, junit_xml
from spiralprune.pipeline.tasks import Metric

GATE_SCHEMA_VERSION = 3  # 3: a check's limit is 'limit' (was 'budget'), its message a whole sentence


@dataclass(frozen=True)
class GateContext:
    """What was gated, for the reports."""

    model: str
    target: str
    profile: Profile
    baseline: Release | None = None
    metrics: dict | None = None
    file: ModelFile | None = None  # what the ONNX file ships (size, parameters, MACs)
    parity: ParityResult | None = None
    metric: Metric = Metric()  # the quality metric the plot shows (the budget's, else the task's own)


def _title(result: GateResult, context: GateContext) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    return f"spiralprune gate {verdict}: {context.model} on {context.target}"


def _summary(result: GateResult) -> str:
    problems = result.problems
    if not problems:
        return f"All {len(result.checks)} checks passed."
    failed = sum(c.status == "fail" for c in problems)
    inconclusive = len(problems) - failed
    return f"{failed} failed and {inconclusive} inconclusive of {len(result.checks)} checks."


def gate_markdown(result: GateResult, context: GateContext, sections: Sequence[str] = ()) -> str:
    """The gate's Markdown summary; ``sections``: lines a command adds at the end (``spiralprune deploy``: the device's layers)."""
    lines = [f"## {_title(result, context)}", "", _summary(result), "",
             *checks_markdown(result.checks)]
    if context.baseline:
        lines += ["", f"Baseline: `{context.baseline.source}`{_comparison(result)}"]
    lines += [*change_markdown(result.attribution), "", *(f"- {note}" for note in result.notes), *sections]
    return "\n".join(lines) + "\n"


def _comparison(result: GateResult) -> str:
    return f" ({result.comparison})" if result.comparison else ""


def gate_junit(result: GateResult) -> str:
    cases = [TestCase(c.name, "spiral.gate", c.status, c.line(), c.line()) for c in result.checks]
    return junit_xml("spiralprune gate", cases)


def gate_html(result: GateResult, context: GateContext, extra: Sequence[str] = ()) -> str:
    """The gate's HTML report; ``extra``: sections a command adds after the checks (``spiralprune deploy``)."""
    sections = [
        f'<p class="verdict {"pass" if result.passed else "fail"}">{esc(_summary(result))}</p>',
        checks_html(result.checks),
    ]
    if context.baseline:
        sections.append(f'<p class="note">Baseline: {esc(context.baseline.source)}{esc(_comparison(result))}</p>')
    sections += [f'<p class="note">{esc(note)}</p>' for note in result.notes]
    sections += [*change_html(result.attribution), *extra]
    m = context.profile.measurements[0]
    baseline = context.baseline
    base = next((b for b in baseline.profile.measurements if b.batch == m.batch), None) if baseline else None
    series = [(f"{context.model} (candidate)", m.samples_ms)]
    if base is not None:
        series.insert(0, (f"{baseline.label} (baseline)", base.samples_ms))
    sections += [f"<h2>Latency distribution, batch {m.batch}</h2>",
                 html_plot(plots.latency_distributions(series, context.target), "latency distribution")]
    q = context.metric
    if context.metrics and q.name in context.metrics:
        points = [plots.ParetoPoint("candidate", m.stats["p50"], q.scale * context.metrics[q.name], "candidate")]
        if base is not None and baseline.metrics and q.name in baseline.metrics:
            points.append(plots.ParetoPoint("baseline", base.stats["p50"], q.scale * baseline.metrics[q.name], "baseline"))
        label = f"{q.name} ({q.unit})" if q.unit else q.name
        sections += [f"<h2>{esc(q.name)} vs latency</h2>",
                     html_plot(plots.pareto_front(points, "p50", label, q.higher_is_better), f"{q.name} vs latency")]
    return html_page(_title(result, context), sections)


def gate_json(result: GateResult, context: GateContext) -> dict:
    return {
        "schema_version": GATE_SCHEMA_VERSION,
        "kind": GATE_REPORT_KIND,
        "spiral": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": context.model,
        "target": context.target,
        **result.to_dict(),
        "baseline": str(context.baseline.source) if context.baseline else None,
        "metrics": context.metrics,
        "metric": asdict(context.metric),
        "size_mb": context.file and context.file.size_mb,
        "params": context.file and context.file.params,
        "macs": context.file and context.file.macs,
        "parity": context.parity.to_dict() if context.parity else None,
        "profile": context.profile.to_dict(),
    }
