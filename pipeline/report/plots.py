"""Report plots drawn with matplotlib's Agg canvas and returned as ``data:image/png;base64`` URIs.

The figures are built with ``matplotlib.figure.Figure`` directly, never ``pyplot``, so no GUI
backend or global figure state is involved.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Fixed colours: the reports look the same everywhere, and a test can find the plots in a screenshot.
BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"
SERIES_COLOURS = (BLUE, ORANGE, GREEN, RED, "#9467bd")


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    latency_ms: float
    quality: float
    kind: str  # "baseline", "accepted", "rejected" or "candidate"


_KIND_COLOURS = {"baseline": GREY, "accepted": GREEN, "rejected": RED, "candidate": BLUE}


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def latency_distributions(series: Sequence[tuple[str, Sequence[float]]], title: str) -> str:
    """One horizontal violin (with its median and p90/p99 marks) per labelled set of samples.

    The axis stops a little past the largest p99.5: one preempted call 1000x slower than the rest
    would otherwise squash every violin into a line. How many samples lie beyond is written below.
    When what remains still spans more than a factor of ten, the violins are drawn over log10 of
    the latency, so the density is estimated on the scale it is shown on.
    """
    import numpy as np

    arrays = [np.asarray(s, dtype=float) for _, s in series]
    cutoff = 1.05 * max(float(np.percentile(a, 99.5)) for a in arrays)
    beyond = sum(int((a > cutoff).sum()) for a in arrays)
    log = cutoff > 10 * min(float(a.min()) for a in arrays)
    scale = np.log10 if log else np.asarray
    figure = _figure(8, 1.2 + 0.6 * len(series))
    ax = figure.add_subplot()
    positions = list(range(len(series), 0, -1))
    parts = ax.violinplot(
        [scale(a[a <= cutoff]) for a in arrays], positions=positions, orientation="horizontal",
        showextrema=False, widths=0.8,
    )
    for body in parts["bodies"]:
        body.set_facecolor(BLUE)
        body.set_edgecolor(BLUE)
        body.set_alpha(0.55)
    for position, samples in zip(positions, arrays):
        for q, colour in ((50, "black"), (90, ORANGE), (99, RED)):
            ax.plot([scale(np.percentile(samples, q))], [position], "|", color=colour, ms=14, mew=2)
    if log:
        low, high = ax.get_xlim()
        ticks = [m * 10.0**e for e in range(-6, 7) for m in (1, 2, 5) if low <= np.log10(m * 10.0**e) <= high]
        ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(positions, [label for label, _ in series])
    note = f"; {beyond} samples beyond {cutoff:.3g} ms not drawn" if beyond else ""
    ax.set_xlabel(f"latency (ms{', log scale' if log else ''}){note}")
    ax.set_title(f"{title}  (marks: p50 black, p90 orange, p99 red)")
    ax.grid(axis="x", alpha=0.3)
    return _data_uri(figure)


def pareto_indices(points: Sequence[ParetoPoint], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and quality (higher, or lower
    for a lower-is-better metric), fastest first."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, p in enumerate(points):
        dominated = any(
            q.latency_ms <= p.latency_ms and sign * q.quality >= sign * p.quality
            and (q.latency_ms < p.latency_ms or sign * q.quality > sign * p.quality)
            for q in points
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i].latency_ms)


def pareto_front(points: Sequence[ParetoPoint], statistic: str, metric: str = "accuracy (%)",
                 higher_is_better: bool = True) -> str:
    """Quality (``metric`` labels its axis) against latency, the Pareto front drawn."""
    figure = _figure(8, 4.5)
    ax = figure.add_subplot()
    front = pareto_indices(points, higher_is_better)
    ax.step(
        [points[i].latency_ms for i in front], [points[i].quality for i in front],
        where="post", color=BLUE, lw=2, alpha=0.7, label="Pareto front",
    )
    for kind, colour in _KIND_COLOURS.items():
        chosen = [p for p in points if p.kind == kind]
        if chosen:
            ax.scatter([p.latency_ms for p in chosen], [p.quality for p in chosen], s=70, color=colour, label=kind, zorder=3)
    for p in points:
        ax.annotate(p.label, (p.latency_ms, p.quality), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"{statistic} latency (ms)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs latency")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _data_uri(figure)


def trend(labels: Sequence[str], series: dict[str, Sequence[float]], quality: Sequence[float | None] = (),
          quality_label: str = "accuracy %") -> str:
    """Each latency statistic over releases, oldest left; the quality metric on a second axis where known."""
    figure = _figure(max(8.0, 0.5 * len(labels)), 4.5)
    ax = figure.add_subplot()
    x = list(range(len(labels)))
    for (name, values), colour in zip(series.items(), SERIES_COLOURS):
        ax.plot(x, list(values), marker="o", color=colour, lw=2, label=name)
    ax.set_xticks(x, list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency by release")
    ax.grid(alpha=0.3)
    known = [(i, a) for i, a in zip(x, quality) if a is not None]
    if known:
        other = ax.twinx()
        other.plot([i for i, _ in known], [a for _, a in known], marker="s", ls="--", color=GREY, label=quality_label)
        other.set_ylabel(quality_label)
        other.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return _data_uri(figure)


def layer_contributions(names: Sequence[str], deltas_ms: Sequence[float], lows: Sequence[float],
                        highs: Sequence[float], title: str,
                        xlabel: str = "change per call (ms, new - base), median over rounds with its interval") -> str:
    """One horizontal bar per layer: its value (a change in ms: red slower, green faster; a share of the
    time: red) with its interval, largest on top."""
    figure = _figure(8, 1.2 + 0.35 * len(names))
    ax = figure.add_subplot()
    y = list(range(len(names), 0, -1))
    colours = [RED if d > 0 else GREEN for d in deltas_ms]
    errors = [[max(0.0, d - lo) for d, lo in zip(deltas_ms, lows)], [max(0.0, hi - d) for d, hi in zip(deltas_ms, highs)]]
    ax.barh(y, list(deltas_ms), color=colours, xerr=errors, ecolor=GREY, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, list(names), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _data_uri(figure)
