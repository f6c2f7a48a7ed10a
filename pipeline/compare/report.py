"""``spiralprune compare`` reports: Markdown, self-contained HTML and versioned JSON, for a pair and a history."""

from __future__ import annotations

import datetime as dt

from spiralprune import __version__
from spiralprune.pipeline.compare.history import History
from spiralprune.pipeline.compare.profiles import BatchComparison, ProfileComparison
from spiralprune.pipeline.compare.releases import Release
from spiralprune.pipeline.report import plots
from spiralprune.pipeline.report.attribution import change_html, change_markdown
from spiralprune.pipeline.report.html import esc, html_page, html_plot, html_table
from spiralprune.pipeline.report.markdown import md_table

COMPARE_SCHEMA_VERSION = 2
COMPARE_REPORT_KIND = "spiral-compare"
HISTORY_REPORT_KIND = "spiral-history"
_HEADERS = ("batch", "statistic", "base ms", "new ms", "change", "confidence interval", "verdict")
PAIRED_ADVICE = "re-measure both paired in one process: spiralprune compare BASE.onnx NEW.onnx"


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


def _range(c: BatchComparison) -> str:
    return f"{_pct(100 * (c.verdict.low - 1))} .. {_pct(100 * (c.verdict.high - 1))}"


def _ci(c: BatchComparison) -> str:
    return f"{c.verdict.confidence:.0%} CI {_range(c)}"


def headline(comparison: ProfileComparison) -> str:
    """The verdict and the deciding change, e.g. ``regression: p50 +10.2% (95% CI +9.0% .. +11.5%)``."""
    parts = []
    for batch, c in comparison.batches.items():
        where = f" at batch {batch}" if len(comparison.batches) > 1 else ""
        parts.append(f"{comparison.budget.statistic}{where} {_pct(c.change_pct)} ({_ci(c)})")
    return f"{comparison.verdict}: " + "; ".join(parts)


def _rows(comparison: ProfileComparison) -> list[list[str]]:
    return [
        [str(batch), comparison.budget.statistic, f"{c.base_ms:.3f}", f"{c.new_ms:.3f}", _pct(c.change_pct),
         _range(c), c.call]
        for batch, c in comparison.batches.items()
    ]


def _notes(comparison: ProfileComparison) -> list[str]:
    budget = comparison.budget
    effect = budget.max_regression_pct
    notes = [f"Comparison: {comparison.kind_label}."]
    if comparison.kind == "paired":
        notes.append(f"Both models were measured in alternating rounds in one process; the interval is that of "
                     f"the median per-round ratio. A regression is an interval entirely above +{effect:g}%, "
                     f"an improvement one entirely below -{effect:g}%.")
    else:
        notes.append(f"Two separate runs: the interval combines both medians' intervals and is widened by "
                     f"±{budget.between_run_tolerance:.0%} for what moves between runs. A regression is an interval "
                     f"entirely above +{effect:g}%, an improvement one entirely below -{effect:g}%.")
    for batch, c in comparison.batches.items():
        message = c.verdict.message()
        if c.call == "inconclusive" and comparison.kind == "runs":
            message += f"; {PAIRED_ADVICE}"
        notes.append(f"batch {batch}: {message}")
    return notes


def comparison_markdown(comparison: ProfileComparison, base: Release, new: Release) -> str:
    lines = [
        f"## spiralprune compare: {headline(comparison)}",
        "",
        f"`{base.label}` (baseline) vs `{new.label}` (new)",
        "",
        *md_table(_HEADERS, _rows(comparison), "rlrrrrl"),
        "",
        *(f"- {n}" for n in _notes(comparison)),
        *change_markdown(comparison.attribution),
    ]
    return "\n".join(lines) + "\n"


def _verdict_class(verdict: str) -> str:
    return {"regression": "fail", "inconclusive": "inconclusive"}.get(verdict, "pass")


def _comparison_sections(comparison: ProfileComparison, base: Release, new: Release) -> list[str]:
    rows = _rows(comparison)
    sections = [
        f'<p class="verdict {_verdict_class(comparison.verdict)}">{esc(headline(comparison))}</p>',
        f"<p>{esc(base.label)} (baseline) vs {esc(new.label)} (new)</p>",
        html_table(_HEADERS, rows, numeric=(0, 2, 3, 4, 5), row_classes=[_verdict_class(r[-1]) for r in rows]),
        *(f'<p class="note">{esc(n)}</p>' for n in _notes(comparison)),
        *change_html(comparison.attribution),
    ]
    for batch in comparison.batches:
        series = [
            (f"{base.label} (baseline)", base.profile.measurement(batch).samples_ms),
            (f"{new.label} (new)", new.profile.measurement(batch).samples_ms),
        ]
        sections += [f"<h2>Latency distribution, batch {batch}</h2>",
                     html_plot(plots.latency_distributions(series, f"batch {batch}"), f"latency distribution, batch {batch}")]
    return sections


def comparison_html(comparison: ProfileComparison, base: Release, new: Release) -> str:
    return html_page("spiralprune compare", _comparison_sections(comparison, base, new))


def _stamp(kind: str) -> dict:
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "kind": kind,
        "spiral": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def comparison_json(comparison: ProfileComparison, base: Release, new: Release) -> dict:
    return {**_stamp(COMPARE_REPORT_KIND), "base": str(base.source), "new": str(new.source), **comparison.to_dict()}


def _history_rows(history: History) -> list[list[str]]:
    series = history.series()
    rows = []
    for i, (release, quality) in enumerate(zip(history.releases, history.quality())):
        rows.append([
            release.label, release.created or "",
            *(f"{series[name][i]:.3f}" for name in series),
            f"{quality:.2f}" if quality is not None else "",
        ])
    return rows


def _history_headers(history: History) -> list[str]:
    return ["release", "date", *(f"{name} ms" for name in history.series()), history.metric.label]


def history_markdown(history: History) -> str:
    verdict = headline(history.latest) if history.latest else history.not_compared or "one release, nothing to compare"
    lines = [
        f"## spiral history: {len(history.releases)} releases, batch {history.batch}",
        "",
        f"Newest vs the one before: {verdict}",
        "",
        *md_table(_history_headers(history), _history_rows(history), "ll" + "r" * 6),
    ]
    return "\n".join(lines) + "\n"


def history_html(history: History) -> str:
    labels = [r.label for r in history.releases]
    sections = [
        "<h2>Trend</h2>",
        html_plot(plots.trend(labels, history.series(), history.quality(), history.metric.label),
                  "latency trend by release"),
        html_table(_history_headers(history), _history_rows(history), numeric=range(2, 8)),
    ]
    if history.latest:
        base, new = history.releases[-2], history.releases[-1]
        sections += ["<h2>Newest release against the one before</h2>", *_comparison_sections(history.latest, base, new)]
    elif history.not_compared:
        sections.append(f'<p class="verdict inconclusive">{esc(history.not_compared)}</p>')
    return html_page(f"spiral history: {len(history.releases)} releases", sections)


def history_json(history: History) -> dict:
    return {**_stamp(HISTORY_REPORT_KIND), **history.to_dict()}
