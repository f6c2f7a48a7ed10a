"""Reading what ``trtexec`` prints and exports: its version, performance summary and time trace.

Formats as written by TensorRT's ``samples/common/sampleReporting.cpp``: the summary lines
``<Metric>: min = X ms, max = X ms, mean = X ms, median = X ms, percentile(P%) = X ms[, ...]``
(8.x prints one percentile, 10.x several), the warning
``GPU compute time is unstable, with coefficient of variance = X%.`` and the ``--exportTimes``
JSON, a list of per-query records (``startEnqMs`` … ``computeMs``, ``latencyMs``, ``endToEndMs``;
before 10.x ``inMs`` / ``outMs`` for the copies) that includes the warm-up queries. The device runner
ships this module; the per-layer ``--exportProfile`` JSON is read on the host
(``spiralprune.deploy.layer_profile.parse_trtexec_profile``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from spiralprune.core.errors import InputError

_VERSION = re.compile(r"\[TensorRT v(\d+)\]")
_METRIC = re.compile(r"\] \[I\] (?P<name>[A-Za-z0-9 \-]+?): (?P<body>min = .*)$")
_FIELD = re.compile(r"(?P<key>min|max|mean|median|percentile\((?P<p>[\d.]+)%\)) = (?P<value>[-\d.e+]+) ms")
_THROUGHPUT = re.compile(r"Throughput: (?P<qps>[\d.e+]+) qps")
_UNSTABLE = re.compile(r"GPU compute time is unstable, with coefficient of variance = (?P<cv>[\d.]+)%")
_WARMUP = re.compile(r"Warmup completed (?P<n>\d+) queries over (?P<ms>[\d.]+) ms")
_TRACE = re.compile(r"Timing trace has (?P<n>\d+) queries over (?P<s>[\d.]+) s")
_WALLTIME = re.compile(r"Total Host Walltime: (?P<s>[\d.e+]+) s")


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) from the ``[TensorRT v101600]`` tag (8.x: v8401 = 8.4.1)."""
    match = _VERSION.search(text)
    if not match:
        raise InputError("no '[TensorRT vNNNN]' tag in the trtexec output: is this trtexec?")
    n = int(match.group(1))
    if n >= 100000:
        return n // 10000, (n // 100) % 100, n % 100
    return n // 1000, (n // 100) % 10, n % 100


@dataclass
class TrtexecSummary:
    """The ``=== Performance summary ===`` of one run; metrics by trtexec's names, stats in ms."""

    throughput_qps: float | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    unstable_cv_percent: float | None = None
    warmup_queries: int | None = None
    warmup_ms: float | None = None
    timed_queries: int | None = None
    walltime_s: float | None = None


def parse_summary(text: str) -> TrtexecSummary:
    summary = TrtexecSummary()
    in_summary = False
    for line in text.splitlines():
        if (m := _WARMUP.search(line)):
            summary.warmup_queries, summary.warmup_ms = int(m["n"]), float(m["ms"])
        elif (m := _TRACE.search(line)):
            summary.timed_queries = int(m["n"])
        if "=== Performance summary ===" in line:
            in_summary = True
            continue
        if not in_summary:
            continue
        if (m := _THROUGHPUT.search(line)):
            summary.throughput_qps = float(m["qps"])
        elif (m := _WALLTIME.search(line)):
            summary.walltime_s = float(m["s"])
        elif (m := _UNSTABLE.search(line)):
            summary.unstable_cv_percent = float(m["cv"])
        elif (m := _METRIC.search(line)):
            stats = {}
            for f in _FIELD.finditer(m["body"]):
                key = f"p{_percent_name(f['p'])}" if f["p"] else f["key"]
                stats[key] = float(f["value"])
            summary.metrics[m["name"].strip()] = stats
    if not summary.metrics:
        raise InputError("no '=== Performance summary ===' with metrics in the trtexec output")
    return summary


def _percent_name(p: str) -> str:
    value = float(p)
    return str(int(value)) if value.is_integer() else p


def parse_export_times(text: str, *, skip: int = 0) -> list[dict[str, float]]:
    """The per-query records of an ``--exportTimes`` file, the first ``skip`` (warm-ups) dropped."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the trtexec --exportTimes file is not JSON: {exc}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError("the trtexec --exportTimes file is not a list of records")
    records = [r for r in records if "computeMs" in r]
    if len(records) <= skip:
        raise InputError(f"the trtexec --exportTimes file has {len(records)} queries, none after {skip} warm-ups")
    return records[skip:]
