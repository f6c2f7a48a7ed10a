"""Where the time goes, as tables: a model's explanation (``spiralprune profile --explain``, the run report's
result), a device's (``spiralprune deploy``) and a change's attribution to layers (``spiralprune compare``,
``spiralprune gate``), from
``spiralprune.deploy.layer_profile``'s numbers."""

from __future__ import annotations

from typing import Any

from spiralprune.pipeline.report import plots
from spiralprune.pipeline.report.html import esc, html_plot, html_table
from spiralprune.pipeline.report.markdown import md_table

# Rows shown in a terminal or a pull-request comment; the JSON keeps every layer.
TOP = 12
EXPLAIN_HEADERS = ("layer", "operator", "kind", "ms", "share", "interval", "MACs")
OP_HEADERS = ("operator", "kind", "layers", "ms", "share", "interval")
PREDICTED_HEADERS = ("layer", "predicted ms", "measured ms", "measured / predicted")
CHANGE_HEADERS = ("layer", "operator", "status", "base ms", "new ms", "change ms", "interval", "ratio",
                  "of the change")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _macs(macs: int | None) -> str:
    return "" if not macs else f"{macs / 1e6:,.1f}M"


def explain_rows(explanation: dict[str, Any], top: int = TOP) -> list[list[str]]:
    rows = []
    for r in explanation["layers"][:top]:
        name = r["name"] + (" (fused)" if r["fused"] and r["name"] not in r["fuses"] else "")
        rows.append([name, r["op_type"], r["kind"], f"{r['ms']:.3f}", _pct(r["share"]),
                     f"{_pct(r['share_low'])} .. {_pct(r['share_high'])}", _macs(r["macs"])])
    return rows


def op_rows(explanation: dict[str, Any]) -> list[list[str]]:
    return [[r["op_type"], r["kind"], str(r["layers"]), f"{r['ms']:.3f}", _pct(r["share"]),
             f"{_pct(r['share_low'])} .. {_pct(r['share_high'])}"] for r in explanation["op_types"]]


def explain_summary(explanation: dict[str, Any]) -> str:
    c, call = explanation["coverage"], explanation.get("profiled_call_ms")  # None also in profiles before it
    whole = (f"the end-to-end median {explanation['end_to_end_ms']:.3f} ms" if call is None else
             f"the profiled calls' {call:.3f} ms (times are those shares of the end-to-end median "
             f"{explanation['end_to_end_ms']:.3f} ms)")
    return (f"{explanation['source']} per-layer profile over {explanation['rounds']} rounds: the layers sum to "
            f"{_pct(c['value'])} of {whole} ({explanation['confidence']:.0%} CI {_pct(c['low'])} .. {_pct(c['high'])})")


def device_headers(host: bool) -> tuple[str, ...]:
    return ("layer", "operator", "kind", "device ms", "device share", *(("host ms", "host share") if host else ()))


def device_rows(device: dict[str, Any], host: dict[str, Any] | None, top: int = TOP) -> list[list[str]]:
    """The device's slowest layers (``spiralprune deploy``), beside the same layers measured on this host when
    there is a host explanation (blank where the host has no layer of that name: another fusion)."""
    here = {r["name"]: r for r in host["layers"]} if host is not None else {}
    rows = []
    for r in device["layers"][:top]:
        row = [r["name"], r["op_type"], r["kind"], f"{r['ms']:.3f}", _pct(r["share"])]
        if host is not None:
            h = here.get(r["name"])
            row += ["", ""] if h is None else [f"{h['ms']:.3f}", _pct(h["share"])]
        rows.append(row)
    return rows


def device_markdown(device: dict[str, Any] | None, host: dict[str, Any] | None, why_not: str | None) -> list[str]:
    """The Markdown section of ``spiralprune deploy --markdown``: where the device's time goes, its slowest
    layers beside this host's when measured (``--explain``), or why the device gave no per-layer profile."""
    if device is None:
        return ["", f"The device gave no per-layer profile ({why_not or 'not profiled'})."]
    lines = ["", "### Where the device's time goes", "", explain_summary(device), "",
             *(f"- {line}" for line in device["findings"])]
    if host is not None:
        lines += ["", f"On this host: {explain_summary(host)}"]
    return [*lines, "", *md_table(device_headers(host is not None), device_rows(device, host), "lllrrrr")]


def device_html(device: dict[str, Any] | None, host: dict[str, Any] | None, why_not: str | None) -> list[str]:
    """The HTML section of ``spiralprune deploy --html``, as ``device_markdown``."""
    if device is None:
        return [f'<p class="note">The device gave no per-layer profile ({esc(why_not or "not profiled")}).</p>']
    return ["<h2>Where the device's time goes</h2>", f"<p>{esc(explain_summary(device))}</p>",
            "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in device["findings"]) + "</ul>",
            *([f"<p>On this host: {esc(explain_summary(host))}</p>"] if host is not None else []),
            html_table(device_headers(host is not None), device_rows(device, host), numeric=range(3, 7))]


def change_rows(attribution: dict[str, Any], top: int = TOP) -> list[list[str]]:
    rows = []
    for r in attribution["layers"][:top]:
        rows.append([r["name"], r["op_type"], r["status"], f"{r['base_ms']:.3f}", f"{r['new_ms']:.3f}",
                     f"{r['delta_ms']:+.3f}", f"{r['delta_low']:+.3f} .. {r['delta_high']:+.3f}",
                     "" if r["ratio"] is None else f"{r['ratio']:.2f}x", _pct(r["share_of_change"])])
    return rows


def change_summary(attribution: dict[str, Any]) -> str:
    change, layers = attribution["change_ms"], attribution["layers"]
    top = layers[0] if layers else None
    text = (f"end-to-end change {change['value']:+.3f} ms ({attribution['confidence']:.0%} CI "
            f"{change['low']:+.3f} .. {change['high']:+.3f}) over {attribution['rounds']} rounds"
            + (f" at batch {attribution['batch']}" if "batch" in attribution else ""))
    if top is not None:
        text += f"; the largest contributor is {top['name']} ({top['status']}, {top['delta_ms']:+.3f} ms)"
    return text


def change_headline(attribution: dict[str, Any]) -> str:
    """``layer3.1.conv2 +0.412 ms of +0.650 ms``: the largest contributor, for a check's message."""
    top = attribution["layers"][0] if attribution["layers"] else None
    change = attribution["change_ms"]["value"]
    if top is None:
        return f"no layer measured; end-to-end {change:+.3f} ms"
    return f"the largest part is {top['name']} ({top['status']}, {top['delta_ms']:+.3f} ms of {change:+.3f} ms)"


def change_markdown(attribution: dict[str, Any] | None) -> list[str]:
    """The Markdown section of a change's attribution (``spiralprune compare``, ``spiralprune gate --baseline-model``)."""
    if attribution is None:
        return []
    return ["", "### Which layers account for the change", "", change_summary(attribution), "",
            *md_table(CHANGE_HEADERS, change_rows(attribution), "lllrrrrrr")]


def change_html(attribution: dict[str, Any] | None) -> list[str]:
    """The HTML section: the summary, a bar chart of the layers' changes with their intervals, the table."""
    if attribution is None:
        return []
    rows = change_rows(attribution)
    shown = attribution["layers"][: len(rows)]
    chart = plots.layer_contributions([r["name"] for r in shown], [r["delta_ms"] for r in shown],
                                      [r["delta_low"] for r in shown], [r["delta_high"] for r in shown],
                                      "which layers account for the change")
    return ["<h2>Which layers account for the change</h2>", f"<p>{esc(change_summary(attribution))}</p>",
            html_plot(chart, "per-layer change"), html_table(CHANGE_HEADERS, rows, numeric=range(3, 9))]


def predicted_rows(predicted: list[dict[str, Any]], top: int = TOP) -> list[list[str]]:
    return [[r["name"], f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}",
             "" if r["ratio"] is None else f"{r['ratio']:.2f}x"]
            for r in predicted[:top]]


def explain_markdown(section: dict[str, Any] | None) -> list[str]:
    """The Markdown section of a model's explanation (``section``: its ``explanation``, the ``model`` it is
    of, and ``predicted``: the latency table's prediction beside the measured time, per layer)."""
    if section is None:
        return []
    explanation = section["explanation"]
    lines = ["", f"### Where the time of {section['model']} goes", "", explain_summary(explanation), "",
             *(f"- {line}" for line in explanation["findings"]), "",
             *md_table(EXPLAIN_HEADERS, explain_rows(explanation), "lllrrrr"), "",
             *md_table(OP_HEADERS, op_rows(explanation), "llrrrr")]
    if section["predicted"]:
        lines += ["", "Predicted (the operator latency table, calibrated) vs measured, per layer, largest "
                  "difference first:", "", *md_table(PREDICTED_HEADERS, predicted_rows(section["predicted"]), "lrrr")]
    return lines


def explain_html(section: dict[str, Any] | None) -> list[str]:
    """The HTML section: the summary and findings, a bar chart of the layers' shares with their intervals,
    the tables."""
    if section is None:
        return []
    explanation = section["explanation"]
    rows = explain_rows(explanation)
    shown = explanation["layers"][: len(rows)]
    chart = plots.layer_contributions([r["name"] for r in shown], [100 * r["share"] for r in shown],
                                      [100 * r["share_low"] for r in shown], [100 * r["share_high"] for r in shown],
                                      "where the time goes", "share of the end-to-end median (%), with its interval")
    parts = [f"<h2>Where the time of {esc(section['model'])} goes</h2>", f"<p>{esc(explain_summary(explanation))}</p>",
             "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in explanation["findings"]) + "</ul>",
             html_plot(chart, "per-layer share of the time"), html_table(EXPLAIN_HEADERS, rows, numeric=range(3, 7)),
             html_table(OP_HEADERS, op_rows(explanation), numeric=range(2, 6))]
    if section["predicted"]:
        parts += ["<h3>Predicted (the operator latency table, calibrated) vs measured, per layer</h3>",
                  html_table(PREDICTED_HEADERS, predicted_rows(section["predicted"]), numeric=range(1, 4))]
    return parts
