"""``spiral compare`` reports: Markdown, self-contained HTML and versioned JSON, for a pair and a history."""

from __future__ import annotations

import datetime as dt

from pipeline.compare.history import History
from pipeline.compare.profiles import ProfileComparison
from pipeline.compare.releases import Release
from pipeline.report import plots
from pipeline.report.html import esc, html_page, html_plot, html_table
from pipeline.report.markdown import md_table

COMPARE_SCHEMA_VERSION = 1
COMPARE_REPORT_KIND = "spiral-compare"
HISTORY_REPORT_KIND = "spiral-history"
_HEADERS = ("batch", "statistic", "base ms", "new ms", "change", "confidence interval", "verdict")


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


def headline(comparison: ProfileComparison) -> str:
    """The verdict and the deciding change, e.g. ``regression: p50 +10.2% (99% CI +9.0% .. +11.5%)``."""
    parts = []
    for batch, s in comparison.deciding().items():
        where = f" at batch {batch}" if len(comparison.batches) > 1 else ""
        parts.append(
            f"{s.statistic}{where} {_pct(s.change_pct)} ({_ci_label(comparison)} "
            f"{_pct(100 * (s.ci_low - 1))} .. {_pct(100 * (s.ci_high - 1))})"
        )
    return f"{comparison.verdict}: " + "; ".join(parts)


def _ci_label(comparison: ProfileComparison) -> str:
    return f"{100 * (1 - comparison.settings.alpha):g}% CI"


def _rows(comparison: ProfileComparison) -> list[list[str]]:
    rows = []
    for batch, c in comparison.batches.items():
        for s in c.stats:
            mark = " (decides)" if s.statistic == comparison.statistic else ""
            rows.append([
                str(batch), s.statistic + mark, f"{s.base_ms:.3f}", f"{s.new_ms:.3f}", _pct(s.change_pct),
                f"{_pct(100 * (s.ci_low - 1))} .. {_pct(100 * (s.ci_high - 1))}", s.verdict,
            ])
    return rows


def _notes(comparison: ProfileComparison) -> list[str]:
    s = comparison.settings
    notes = [
        f"A regression needs Mann-Whitney p < {s.alpha:g} and the whole {_ci_label(comparison)} of the ratio "
        f"beyond +{s.min_effect_pct:g}%; a measurement with cv > {s.max_cv:.0%} is inconclusive."
    ]
    for batch, c in comparison.batches.items():
        notes.append(
            f"batch {batch}: {c.base_n} vs {c.new_n} samples, robust cv {c.base_cv:.1%} vs {c.new_cv:.1%}, "
            f"Mann-Whitney p = {c.p_value:.2g}" + (f"; {c.note}" if c.note else "")
        )
    return notes + [f"warning: {w}" for w in comparison.warnings]


def comparison_markdown(comparison: ProfileComparison, base: Release, new: Release) -> str:
    lines = [
        f"## spiral compare: {headline(comparison)}",
        "",
        f"`{base.label}` (baseline) vs `{new.label}` (new)",
        "",
        *md_table(_HEADERS, _rows(comparison), "rlrrrrl"),
        "",
        *(f"- {n}" for n in _notes(comparison)),
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
    return html_page("spiral compare", _comparison_sections(comparison, base, new))


def _stamp(kind: str) -> dict:
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "kind": kind,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def comparison_json(comparison: ProfileComparison, base: Release, new: Release) -> dict:
    return {**_stamp(COMPARE_REPORT_KIND), "base": str(base.source), "new": str(new.source), **comparison.to_dict()}


def _history_rows(history: History) -> list[list[str]]:
    series = history.series()
    rows = []
    for i, (release, accuracy) in enumerate(zip(history.releases, history.accuracy())):
        rows.append([
            release.label, release.created or "",
            *(f"{series[name][i]:.3f}" for name in series),
            f"{accuracy:.2f}" if accuracy is not None else "",
        ])
    return rows


def _history_headers(history: History) -> list[str]:
    return ["release", "date", *(f"{name} ms" for name in history.series()), "accuracy %"]


def history_markdown(history: History) -> str:
    verdict = headline(history.latest) if history.latest else "one release, nothing to compare"
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
        html_plot(plots.trend(labels, history.series(), history.accuracy()), "latency trend by release"),
        html_table(_history_headers(history), _history_rows(history), numeric=range(2, 8)),
    ]
    if history.latest:
        base, new = history.releases[-2], history.releases[-1]
        sections += ["<h2>Newest release against the one before</h2>", *_comparison_sections(history.latest, base, new)]
    return html_page(f"spiral history: {len(history.releases)} releases", sections)


def history_json(history: History) -> dict:
    return {**_stamp(HISTORY_REPORT_KIND), **history.to_dict()}
