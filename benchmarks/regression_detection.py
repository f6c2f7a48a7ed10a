"""Does ``spiral compare`` find real regressions and only those? Prints a table.

- A/A: the same ONNX model profiled twice, ``--repeats`` times: every "regression" is a false alarm.
- A/B: a model that does ~10 % more work (one more 3x3 conv block out of ten, so ~10 % more MACs
  at the same channel count), profiled after A; a detection is a "regression" verdict.

Each repetition profiles A, A again and B back to back with the profiler's default settings, then
compares (A, A') and (A', B) on p50 with the default settings of ``spiral compare`` (minimum effect
5 %, alpha 0.01, max robust cv 0.10). The measured slowdown of B is printed so the 10 % is a measurement,
not an assumption. The same pairs are also judged with the stability rule switched off, to show
what the rule protects against on the machine at hand.

    .venv/bin/python benchmarks/regression_detection.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploy.profiler import profile_model
from pipeline.compare.profiles import compare_profiles
from pipeline.compare.stats import CompareSettings, robust_cv
from pipeline.export import export_onnx

BLOCKS = 10
CHANNELS = 32
SIZE = 32


def conv_net(blocks: int) -> nn.Module:
    """A stem, ``blocks`` identical 3x3 conv + ReLU blocks and a classifier head."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, CHANNELS, 3, padding=1), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS, 10)]
    return nn.Sequential(*layers).eval()


def conv_macs(blocks: int) -> int:
    per_pixel = 3 * CHANNELS * 9 + blocks * CHANNELS * CHANNELS * 9
    return SIZE * SIZE * per_pixel + CHANNELS * 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    settings = CompareSettings()
    without_stability = CompareSettings(max_cv=1e9)
    example = torch.randn(1, 3, SIZE, SIZE)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        a_path = export_onnx(conv_net(BLOCKS), example, Path(tmp) / "a.onnx")
        b_path = export_onnx(conv_net(BLOCKS + 1), example, Path(tmp) / "b.onnx")
        aa, ab, aa_off, ab_off, slowdowns, cvs = Counter(), Counter(), Counter(), Counter(), [], []
        print(f"{'rep':>3}  {'A p50':>7}  {'A2 p50':>7}  {'B p50':>7}  {'A/A':<24}  {'A/B':<24}  robust cv A / A2 / B")
        for rep in range(1, args.repeats + 1):
            a, a2, b = (profile_model(p, "ort-cpu", threads=args.threads) for p in (a_path, a_path, b_path))
            same = compare_profiles(a, a2, settings).deciding()[1]
            slower = compare_profiles(a2, b, settings).deciding()[1]
            aa[same.verdict] += 1
            ab[slower.verdict] += 1
            aa_off[compare_profiles(a, a2, without_stability).verdict] += 1
            ab_off[compare_profiles(a2, b, without_stability).verdict] += 1
            slowdowns.append(slower.change_pct)
            cv = [robust_cv(np.asarray(p.measurements[0].samples_ms)) for p in (a, a2, b)]
            cvs += cv
            print(
                f"{rep:>3}  {a.stat():7.3f}  {a2.stat():7.3f}  {b.stat():7.3f}  "
                f"{same.verdict + f' {same.change_pct:+.1f}%':<24}  {slower.verdict + f' {slower.change_pct:+.1f}%':<24}  "
                + " / ".join(f"{c:.3f}" for c in cv)
            )
    n = args.repeats
    print()
    print(f"model A: {BLOCKS} conv blocks, {conv_macs(BLOCKS) / 1e6:.1f} M MACs; model B: {BLOCKS + 1} blocks, "
          f"{conv_macs(BLOCKS + 1) / 1e6:.1f} M MACs (+{100 * (conv_macs(BLOCKS + 1) / conv_macs(BLOCKS) - 1):.1f} %)")
    print(f"measured p50 slowdown of B: median {statistics.median(slowdowns):+.1f} %, "
          f"range {min(slowdowns):+.1f} .. {max(slowdowns):+.1f} %")
    print(f"load average (1 min) {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, "
          f"on {os.cpu_count()} logical CPUs")
    print(f"ONNX Runtime CPU, {args.threads} thread(s); robust cv of the {len(cvs)} profiles: median {statistics.median(cvs):.3f}, "
          f"max {max(cvs):.3f}; {sum(c > settings.max_cv for c in cvs)} above {settings.max_cv}")
    print()
    print("| experiment | repetitions | regression | inconclusive | no change | improvement |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, counts in (
        ("A/A (same model twice)", aa), ("A/B (B does ~10 % more work)", ab),
        ("A/A, stability rule off (diagnostic)", aa_off), ("A/B, stability rule off (diagnostic)", ab_off),
    ):
        print(f"| {name} | {n} | {counts['regression']} | {counts['inconclusive']} | {counts['no change']} | {counts['improvement']} |")
    print()
    print(f"false regressions in A/A: {aa['regression']} of {n} (target 0); "
          f"slowdowns detected: {ab['regression']} of {n} (target >= {n - n // 20}); "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
