"""Are spiral's latency verdicts right, on a quiet machine and on a loaded one? Prints a table per condition.

Two ONNX models of known relative cost: A, a small conv net (stem, ten 3x3 conv blocks, head), and
B, the same net with an eleventh block (~10 % more MACs). Their true ratio is measured once per run,
before any load, with one long paired session (printed with its interval); the limits below are
placed from it. Then each question is asked ``--repeats`` times, each time in a fresh
``spiralprune.deploy.profiler.profile_paired`` session on ONNX Runtime CPU with the default ``ProfileSettings``
(rounds until the judge decides, or its time cap); the questions take turns within a repetition.
A verdict's wall time is the whole ``profile_paired`` call (loading, warm-up and rounds).

| question | evidence | goal (of 20) |
|---|---|---|
| A/A: is A' at most 1.05x A | A, A (one file, two sessions) | misses 0, undecided <= 2 |
| regression: is B at most 1.05x A | A, B | misses >= 19 (detected) |
| under budget: is A at most (A/B)/0.9 x B | B, A | meets >= 19 (10 % under its step budget) |
| over budget: is A at most (A/B)/1.05 x B | B, A | meets <= 1 (5 % over its step budget) |
| absolute: is A at most 100x its p50 ms | A | meets 20 |

For comparison, the old way: A profiled twice by ``profile_model`` (two separate profiles) and
compared by their ratio of p50; how often that A/A pair differs by more than 5 % is the
false-regression rate of unpaired profiles.

The ``loaded`` condition starts one CPU-bound numpy process per logical CPU, on this machine only,
for the length of the condition (bounded in time; killed at the end, on an error and on Ctrl-C; it
also exits by itself if this script dies). Each condition reports its load average at start and end.

    .venv/bin/python benchmarks/verdict_calibration.py [--repeats 20] [--load quiet loaded both]
        [--threads 1] [--json OUT] [--quick]

``--quick`` runs 2 repetitions with short settings, to prove the path in under a minute.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spiralprune.deploy.fingerprint import cpu_model
from spiralprune.deploy.profiler import Target, profile_model, profile_paired
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.verdict import Question, Verdict, interval
from spiralprune.pipeline.export import export_onnx

BLOCKS = 10
CHANNELS = 32
SIZE = 32
CALIBRATION_S = 30.0
QUICK = ProfileSettings(warmup_s=0.05, min_rounds=6, min_duration_s=0.1, max_duration_s=1.0)
BUSY = """
import os, sys, time
import numpy as np
end, parent = time.monotonic() + float(sys.argv[1]), os.getppid()
a = np.random.default_rng(0).random((256, 256))
out = np.empty_like(a)
while time.monotonic() < end and os.getppid() == parent:
    np.matmul(a, a, out=out)
"""


def conv_net(blocks: int) -> nn.Module:
    """A stem, ``blocks`` identical 3x3 conv + ReLU blocks and a classifier head."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, CHANNELS, 3, padding=1), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS, 10)]
    return nn.Sequential(*layers).eval()


def conv_macs(blocks: int) -> int:
    return SIZE * SIZE * (3 * CHANNELS * 9 + blocks * CHANNELS * CHANNELS * 9) + CHANNELS * 10


@contextmanager
def cpu_load(workers: int, bound_s: float) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``workers`` single-threaded numpy matmul loops, each ending after ``bound_s`` or with this process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY, str(bound_s)], env=env))
        if procs:
            time.sleep(1.0)  # let the workers start before anything is measured
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@dataclass(frozen=True)
class Case:
    """One question, the models its sessions load, and its goal on ``n`` repetitions."""

    question: Question
    models: dict[str, Path]
    goal: str
    met: Callable[[Counter[str], int], bool]


def cases(a: Path, b: Path, ratio_ab: float, p50_a: float) -> list[Case]:
    """The five questions, their limits placed from the measured truth (``ratio_ab`` = A/B)."""
    return [
        Case(Question("A/A", "A2", 1.05, "A"), {"A": a, "A2": a}, "misses 0, undecided <= n/10",
             lambda c, n: c["misses"] == 0 and c["undecided"] <= n // 10),
        Case(Question("regression (B ~10 % slower)", "B", 1.05, "A"), {"A": a, "B": b}, "misses >= n - n/20",
             lambda c, n: c["misses"] >= n - n // 20),
        Case(Question("10 % under step budget", "A", ratio_ab / 0.9, "B"), {"B": b, "A": a}, "meets >= n - n/20",
             lambda c, n: c["meets"] >= n - n // 20),
        Case(Question("5 % over step budget", "A", ratio_ab / 1.05, "B"), {"B": b, "A": a}, "meets <= n/20",
             lambda c, n: c["meets"] <= n // 20),
        Case(Question("absolute, 100x p50", "A", 100 * p50_a), {"A": a}, "meets n",
             lambda c, n: c["meets"] == n),
    ]


def calibrate(a: Path, b: Path, target: Target, seconds: float) -> tuple[tuple[float, float, float], float]:
    """B/A ratio (median of round ratios, 95 % CI) and A's p50 ms from one ``seconds``-long paired session."""
    settings = ProfileSettings(min_duration_s=seconds, max_duration_s=seconds, ci_rel=0.0)
    paired = profile_paired({"A": a, "B": b}, target, settings)
    series = paired.rounds.series
    return interval(series["B"].rounds("p50") / series["A"].rounds("p50"), 0.95), paired.profiles["A"].stat("p50")


def run_condition(a: Path, b: Path, target: Target, settings: ProfileSettings, repeats: int,
                  ratio: float, p50_a: float) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    asked = cases(a, b, 1 / ratio, p50_a)
    verdicts: list[list[Verdict]] = [[] for _ in asked]
    walls: list[list[float]] = [[] for _ in asked]
    unpaired: list[float] = []
    unpaired_walls: list[float] = []
    for rep in range(1, repeats + 1):
        line = []
        for case, vs, ws in zip(asked, verdicts, walls):
            start = time.perf_counter()
            vs.append(profile_paired(case.models, target, settings, [case.question]).verdict(case.question.name))
            ws.append(time.perf_counter() - start)
            line.append(f"{vs[-1].outcome} {vs[-1].estimate:.3g} in {ws[-1]:.1f} s")
        start = time.perf_counter()
        first, second = (profile_model(a, target.backend, threads=target.threads, settings=settings) for _ in range(2))
        unpaired_walls.append(time.perf_counter() - start)
        unpaired.append(second.stat("p50") / first.stat("p50"))
        print(f"  rep {rep}/{repeats}: " + "; ".join(line) + f"; unpaired A/A {unpaired[-1]:.3f}")

    load_end = os.getloadavg()[0]
    print(f"\nload average (1 min): {load_start:.2f} at the start, {load_end:.2f} at the end\n")
    print(f"| question | goal (n = {repeats}) | meets | misses | undecided | goal met | estimate median "
          "| wall s median | wall s p90 | rounds median |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    results = []
    for case, vs, ws in zip(asked, verdicts, walls):
        counts = Counter(v.outcome for v in vs)
        met = case.met(counts, repeats)
        print(f"| {case.question.describe_limit()} ({case.question.name}) | {case.goal} | {counts['meets']} | "
              f"{counts['misses']} | {counts['undecided']} | {'yes' if met else 'NO'} | "
              f"{np.median([v.estimate for v in vs]):.4g} | {np.median(ws):.2f} | "
              f"{np.percentile(ws, 90):.2f} | {np.median([v.rounds for v in vs]):.0f} |")
        results.append({"goal": case.goal, "goal_met": met, "counts": dict(counts), "wall_s": ws,
                        "verdicts": [v.to_dict() for v in vs]})
    wrong = sum(abs(r - 1) > 0.05 for r in unpaired)
    print(f"\nold way (two separate profile_model profiles of A, ratio of p50): {wrong} of {repeats} A/A pairs differ "
          f"by more than 5 % (ratios {min(unpaired):.3f} .. {max(unpaired):.3f}); "
          f"median wall {np.median(unpaired_walls):.2f} s for the two profiles")
    return {"load_average": [load_start, load_end], "questions": results,
            "unpaired_aa": {"ratios": unpaired, "wall_s": unpaired_walls, "beyond_5pct": wrong}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--load", choices=("quiet", "loaded", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every verdict and count to this file")
    parser.add_argument("--quick", action="store_true", help="2 repetitions, short settings: proves the path")
    args = parser.parse_args()

    repeats = 2 if args.quick else args.repeats
    settings = QUICK if args.quick else ProfileSettings()
    calibration_s = 2.0 if args.quick else CALIBRATION_S
    target = Target("ort-cpu", 1, args.threads, "fp32")
    workers = os.cpu_count() or 1
    conditions = ["quiet", "loaded"] if args.load == "both" else [args.load]
    report: dict[str, Any] = {
        "machine": cpu_model(), "logical_cpus": os.cpu_count(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "threads": args.threads, "repeats": repeats, "settings": asdict(settings), "conditions": {},
    }
    print(f"{report['machine']}, {report['logical_cpus']} logical CPUs, {report['date']}; ONNX Runtime CPU, "
          f"{args.threads} thread(s), batch 1; A: {BLOCKS} conv blocks, B: {BLOCKS + 1}; {repeats} repetitions")
    with tempfile.TemporaryDirectory() as tmp:
        example = torch.randn(1, 3, SIZE, SIZE)
        a = export_onnx(conv_net(BLOCKS), example, Path(tmp) / "a.onnx")
        b = export_onnx(conv_net(BLOCKS + 1), example, Path(tmp) / "b.onnx")
        (ratio, low, high), p50_a = calibrate(a, b, target, calibration_s)
        report["truth"] = {"b_over_a": ratio, "ci95": [low, high], "a_p50_ms": p50_a, "seconds": calibration_s}
        print(f"\ntruth, from one {calibration_s:.0f} s paired session before any load: B/A = {ratio:.4f} "
              f"(95 % CI {low:.4f} .. {high:.4f}; MACs ratio {conv_macs(BLOCKS + 1) / conv_macs(BLOCKS):.4f}), "
              f"A/B = {1 / ratio:.4f}, A p50 {p50_a:.3f} ms")
        for condition in conditions:
            competing = workers if condition == "loaded" else 0
            print(f"\n## {condition} ({competing} competing CPU-bound processes)")
            bound_s = 60 + repeats * 7 * (settings.max_duration_s + 2)
            with cpu_load(competing, bound_s) as procs:
                report["conditions"][condition] = run_condition(a, b, target, settings, repeats, ratio, p50_a)
                if any(p.poll() is not None for p in procs):
                    print(f"warning: the competing load ended before the condition did (bound {bound_s:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
