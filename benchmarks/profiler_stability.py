"""How repeatable is the profiler on this machine? Profile one model back to back, many times.

    python benchmarks/profiler_stability.py [MODEL.onnx] [--runs 10] [--backend ort-cpu] [--threads 2]

Without a model it exports torchvision's ResNet-18 (random weights) at 1x3x32x32. Prints each
run's p50, the median p50 with its spread, the largest difference between two back-to-back runs,
and how often the ``stable`` flag held.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from spiralprune.deploy.profiler import ProfileSettings, profile_model


def export_resnet18(directory: Path) -> Path:
    import torch
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    path = directory / "resnet18-32.onnx"
    torch.onnx.export(
        model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False,
        input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_resnet18(Path(tmp))
        p50s, stable, samples = [], 0, []
        for i in range(args.runs):
            profile = profile_model(model, args.backend, batch_sizes=(args.batch,), threads=args.threads,
                                    settings=ProfileSettings())
            m = profile.measurements[0]
            p50s.append(m.stats["p50"])
            stable += m.stable
            samples.append(len(m.samples_ms))
            print(f"run {i + 1:2d}: p50 {m.stats['p50']:.4f} ms  cv {100 * m.stats['cv']:5.1f} %  "
                  f"n {len(m.samples_ms):5d}  {m.stop_reason:13s} {'stable' if m.stable else 'UNSTABLE'}")
    median = statistics.median(p50s)
    steps = [abs(b - a) / min(a, b) for a, b in zip(p50s, p50s[1:])]
    print(f"\n{args.backend}, {profile.runner_settings.get('threads')} threads, batch {args.batch}, {args.runs} runs")
    print(f"median p50 {median:.4f} ms; range {min(p50s):.4f}..{max(p50s):.4f} ms "
          f"({100 * (max(p50s) - min(p50s)) / median:.1f} % of the median)")
    if steps:
        within = sum(s <= 0.05 for s in steps)
        print(f"back-to-back p50 difference: median {100 * statistics.median(steps):.1f} %, "
              f"max {100 * max(steps):.1f} %; within 5 %: {within}/{len(steps)} pairs")
    print(f"stable (CV <= 10 %): {stable}/{args.runs} runs; samples per run: {min(samples)}..{max(samples)}")


if __name__ == "__main__":
    main()
