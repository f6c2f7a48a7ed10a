"""Does spiral's profiler agree with a plain timing loop on a GPU, eager and torch.compile?

    python benchmarks/gpu_check.py [--models resnet18 resnet50] [--batch 1 64]
        [--modes eager default reduce-overhead] [--calls 200] [--spin-wait] [--json OUT]

For each model (torchvision ResNet-18 at 32x32 and ResNet-50 at 224x224, random weights, 10
classes), batch and mode (``eager``: the ``torch`` backend; a ``torch.compile`` mode: the
``torch-compile`` backend with that mode), the p50 the project's profiler measures
(``spiralprune.deploy.profiler.profile_model``, default settings) beside the p50 of a plain loop: a
timed warm-up, then ``--calls`` calls each between a pair of CUDA events, synchronised after each
call. The table gives both and their disagreement; the GPU issue's goal is within 5 % at batch 1 and
at batch 64. On a machine without CUDA both run on the CPU (the loop timed with ``perf_counter``),
so the script's path runs anywhere, but the numbers are only meaningful on a GPU. ``--spin-wait``
profiles with the torch targets' ``spin_wait`` (the host polls each call's end event, as trtexec's
``--useSpinWait``; CUDA only), to see whether it removes batch-1 bimodality.

Prints a Markdown table with the date, the GPU, its driver, the clocks ``nvidia-smi`` reports
before and after, torch's version and the load average; ``--json`` writes every number.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spiralprune.core.atomic import write_json  # noqa: E402
from spiralprune.deploy.fingerprint import gpu_info  # noqa: E402
from spiralprune.deploy.profiler import ProfileSettings, profile_model  # noqa: E402

MODELS = {"resnet18": (torchvision.models.resnet18, 32), "resnet50": (torchvision.models.resnet50, 224)}
MODES = ("eager", "default", "reduce-overhead", "max-autotune")
WARMUP_S = 2.0


def clocks() -> str:
    """SM and memory clocks of GPU 0 as ``nvidia-smi`` reports them, or why there are none."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi"
    done = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.mem,clocks.max.sm", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip()


def plain_p50(forward, x: torch.Tensor, calls: int, device: str) -> float:
    """p50 (ms) of ``forward(x)``: a timed warm-up, then ``calls`` calls, each timed alone."""
    with torch.inference_mode():
        end = time.perf_counter() + WARMUP_S
        while time.perf_counter() < end:
            forward(x)
        if device == "cuda":
            torch.cuda.synchronize()
        samples = []
        for _ in range(calls):
            if device == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                forward(x)
                stop.record()
                torch.cuda.synchronize()
                samples.append(start.elapsed_time(stop))
            else:
                began = time.perf_counter()
                forward(x)
                samples.append(1000 * (time.perf_counter() - began))
    return statistics.median(samples)


def check(name: str, batch: int, mode: str, calls: int, device: str, work: Path, spin_wait: bool) -> dict:
    factory, size = MODELS[name]
    torch.manual_seed(0)
    module = factory(num_classes=10).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    onnx_path = work / f"{name}.onnx"
    if not onnx_path.exists():
        torch.onnx.export(module.cpu(), (torch.randn(1, 3, size, size),), str(onnx_path), dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        module.to(device)
    backend, options = ("torch", {}) if mode == "eager" else ("torch-compile", {"mode": mode})
    if spin_wait and device == "cuda":
        options["spin_wait"] = True
    started = time.perf_counter()
    profile = profile_model(onnx_path, backend, batch_sizes=[batch], settings=ProfileSettings(),
                            cache_dir=work / "cache", backend_options={"module": module, "device": device, **options})
    profiled = profile.measurements[0]
    forward = module if mode == "eager" else torch.compile(module, mode=mode)
    plain = plain_p50(forward, x, calls, device)
    return {"model": name, "batch": batch, "mode": mode, "profiler_p50_ms": profiled.stats["p50"],
            "profiler_cv": profiled.stats["cv"], "stable": profiled.stable, "plain_p50_ms": plain,
            "disagreement_pct": 100 * (profiled.stats["p50"] / plain - 1), "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["eager", "default", "reduce-overhead"])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--spin-wait", action="store_true", help="profile with spin_wait (CUDA only)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = gpu_info()
    header = {"date": dt.datetime.now().isoformat(timespec="minutes"), "device": device, "gpu": gpu,
              "torch": torch.__version__, "cuda": torch.version.cuda, "clocks_before": clocks(),
              "load_start": os.getloadavg()[0], "spin_wait": args.spin_wait and device == "cuda"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="spiral-gpu-check-") as tmp:
        for name in args.models:
            for batch in args.batch:
                for mode in args.modes:
                    row = check(name, batch, mode, args.calls, device, Path(tmp), args.spin_wait)
                    rows.append(row)
                    print(f"{name} batch {batch} {mode}: profiler {row['profiler_p50_ms']:.3f} ms, plain "
                          f"{row['plain_p50_ms']:.3f} ms ({row['disagreement_pct']:+.1f} %)", file=sys.stderr)
    header["clocks_after"], header["load_end"] = clocks(), os.getloadavg()[0]
    where = (f"{gpu['name']}, driver {gpu.get('driver')}" if gpu else f"no GPU: {device}")
    print(f"{header['date']}, {where}, torch {header['torch']} (CUDA {header['cuda']}); clocks before "
          f"{header['clocks_before']}, after {header['clocks_after']}; load average {header['load_start']:.2f} "
          f"-> {header['load_end']:.2f}; profiler wait: {'spin' if header['spin_wait'] else 'synchronize'}\n")
    print("| model | batch | mode | profiler p50 ms (cv) | plain loop p50 ms | disagreement | stable |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['mode']} | {r['profiler_p50_ms']:.3f} ({r['profiler_cv']:.2f}) | "
              f"{r['plain_p50_ms']:.3f} | {r['disagreement_pct']:+.1f} % | {'yes' if r['stable'] else 'no'} |")
    if args.json is not None:
        write_json(args.json, {**header, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
