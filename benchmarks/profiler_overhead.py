"""Does the profiler add overhead of its own? Its p50 against a plain ``session.run`` timing loop.

Each round times a plain loop (50 warm-up calls, 200 timed), then ``profile_model`` on the same
session options and inputs, then the plain loop again, so drift on a shared machine shows as a
difference between the two plain loops rather than as profiler overhead. Prints every round and
the median ratio of the profiler's p50 to the mean of its two brackets.

    .venv/bin/python benchmarks/profiler_overhead.py [--rounds 10] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from spiralprune.deploy.backends.inputs import make_inputs
from spiralprune.deploy.profiler import ProfileSettings, profile_model
from spiralprune.pipeline.export import export_onnx

SETTINGS = ProfileSettings(warmup_s=0.1, block_s=0.0, block_calls=5, min_rounds=40, min_duration_s=0.2,
                           max_duration_s=1.5, ci_rel=0.01)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


def plain_p50(session: ort.InferenceSession, feed: dict) -> float:
    for _ in range(50):
        session.run(None, feed)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64, help="batch size (64: about 1 ms a call here)")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(tiny_net(), torch.zeros(1, 3, 16, 16), Path(tmp) / "tiny.onnx")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = make_inputs({"input": (["batch", 3, 16, 16], np.dtype(np.float32))}, args.batch)
        print("| round | plain before ms | profiler p50 ms | plain after ms | profiler / plain |")
        print("|---:|---:|---:|---:|---:|")
        ratios = []
        for i in range(1, args.rounds + 1):
            before = plain_p50(session, feed)
            p50 = profile_model(path, batch_sizes=(args.batch,), threads=1, settings=SETTINGS, inputs=feed).stat("p50")
            after = plain_p50(session, feed)
            ratios.append(p50 / ((before + after) / 2))
            print(f"| {i} | {before:.3f} | {p50:.3f} | {after:.3f} | {ratios[-1]:.3f} |")
    print(f"\nprofiler / plain loop: median {statistics.median(ratios):.3f}, range {min(ratios):.3f} .. {max(ratios):.3f}")


if __name__ == "__main__":
    main()
