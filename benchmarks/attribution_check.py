"""Does per-layer attribution add up, name the right layer, and cost little? (issue 35's goals)

On ONNX Runtime CPU, with models of known structure:

1. **coverage**: how much of a profiled call its layers account for (goal 0.85-1.15; a layer's share is
   its part of its own profiled call, its time that share of the judged p50), beside how much slower
   the profiled calls ran than the judged ones, on the demo teacher's layout (``digits_resnet``, width 48, 1x32x32) and a student of its layout at
   width 24 (about 4x fewer MACs; the demo's pruned student has uneven widths, this one is its
   stand-in). Weights are random: latency does not depend on them.
2. **the widened layer**: ``tests/chain_net.py``'s ten layers against the same with its last
   convolution 4x wider, ``profile_paired`` with layers as ``spiralprune compare`` runs it; the widened
   layer must come first (goal: 10 of 10 repeats).
3. **INT8 float fallbacks**: the chain quantized to QDQ INT8 with two convolutions kept float (as
   the float fallback keeps them); the explanation must list exactly those as float.
4. **overhead and verdicts**: ``profile_model`` with and without layers, alternated; the wall time
   ratio (goal <= 1.2) and the judged rounds (the same stop rule: same counts when capped).

    .venv/bin/python benchmarks/attribution_check.py [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spiralprune.deploy.layer_profile import attribute_change  # noqa: E402
from spiralprune.deploy.profiler import Target, profile_model, profile_paired  # noqa: E402
from spiralprune.deploy.sampling import ProfileSettings  # noqa: E402
from spiralprune.deploy.verdict import Question  # noqa: E402
from spiralprune.pipeline.passes.int8.config import QuantizeConfig  # noqa: E402
from spiralprune.pipeline.export import export_onnx  # noqa: E402
from spiralprune.pipeline.passes.int8.float_fallback import _quantize_keeping  # noqa: E402
from spiralprune.pipeline.passes.int8.quantize import Calibrated  # noqa: E402
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet  # noqa: E402
from tests.chain_net import WIDENED, chain_net  # noqa: E402


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} .. {max(values):.3f}"


def export(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    torch.manual_seed(0)
    return export_onnx(model.eval(), torch.randn(*shape), path)


def coverage(path: Path, threads: int, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Coverage, the judged p50 and the profiled calls' time / the judged median, per repeat."""
    covered, p50, slower = [], [], []
    for _ in range(repeats):
        m = profile_model(path, threads=threads, layers=True).measurement()
        explanation = m.layers["explanation"]
        covered.append(explanation["coverage"]["value"])
        p50.append(m.stats["p50"])
        slower.append(explanation["profiled_call_ms"] / explanation["end_to_end_ms"])
    return covered, p50, slower


def widened(folder: Path, threads: int, repeats: int) -> tuple[int, list[float], list[str]]:
    torch.manual_seed(0)
    base = export(chain_net(16), (1, 3, 32, 32), folder / "chain.onnx")
    torch.manual_seed(0)
    wide = export(chain_net(16, wide=4), (1, 3, 32, 32), folder / "chain-wide.onnx")
    hits, shares, tops = 0, [], []
    settings = ProfileSettings(max_duration_s=3.0)
    for _ in range(repeats):
        paired = profile_paired({"base": base, "new": wide}, Target(threads=threads), settings,
                                [Question("regression", "new", 1.05, reference="base")], layers=("base", "new"))
        b, n = (paired.profiles[k].measurement() for k in ("base", "new"))
        top = attribute_change(b.layer_profile(), n.layer_profile(), b.rounds(), n.rounds())["layers"][0]
        hits += top["name"] == WIDENED
        tops.append(top["name"])
        shares.append(top["share_of_change"] or float("nan"))
    return hits, shares, tops


def int8_fallbacks(folder: Path, threads: int) -> tuple[set[str], set[str]]:
    torch.manual_seed(0)
    path = export(chain_net(16), (1, 3, 32, 32), folder / "chain-float.onnx")
    keep = {"/0/Conv": "0", "/16/Conv": "16"}  # the first and the last convolution stay float
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    work = Path(tempfile.mkdtemp(dir=folder))
    out = folder / "chain-int8.onnx"
    _quantize_keeping(Calibrated(path, work, batches, QuantizeConfig()), out, list(keep))
    m = profile_model(out, threads=threads, layers=True, precision="int8",
                      settings=ProfileSettings(max_duration_s=2.0)).measurement()
    return set(m.layers["explanation"]["int8"]["float"]), set(keep.values())


def overhead(path: Path, threads: int, repeats: int) -> tuple[list[float], list[tuple[int, int]]]:
    ratios, rounds = [], []
    settings = ProfileSettings(ci_rel=0, max_duration_s=2.0, min_duration_s=2.0)  # a fixed span: same stop rule
    for _ in range(repeats):
        walls = {}
        for layers in (False, True):
            start = time.perf_counter()
            m = profile_model(path, threads=threads, layers=layers, settings=settings).measurement()
            walls[layers] = (time.perf_counter() - start, len(m.round_sizes))
        ratios.append(walls[True][0] / walls[False][0])
        rounds.append((walls[False][1], walls[True][1]))
    return ratios, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started, load_start = dt.datetime.now().isoformat(timespec="minutes"), load()
    with tempfile.TemporaryDirectory(prefix="spiral-attribution-") as tmp:
        folder = Path(tmp)
        teacher = export(digits_resnet(width=48), (1, 1, 32, 32), folder / "teacher.onnx")
        student = export(digits_resnet(width=24), (1, 1, 32, 32), folder / "student.onnx")
        rows = []
        for name, path in (("teacher (width 48)", teacher), ("student (width 24)", student)):
            covered, p50, slower = coverage(path, args.threads, 3)
            ok = all(0.85 <= c <= 1.15 for c in covered)
            rows.append((f"coverage, {name}", f"{statistics.median(covered):.3f}", spread(covered),
                         f"p50 {statistics.median(p50):.3f} ms; profiled calls {statistics.median(slower):.2f}x it",
                         "0.85-1.15", "yes" if ok else "NO"))
        hits, shares, tops = widened(folder, args.threads, args.repeats)
        rows.append(("widened layer named first", f"{hits}/{args.repeats}", spread(shares),
                     f"its share of the change; tops: {sorted(set(tops))}", f"{args.repeats}/{args.repeats}",
                     "yes" if hits == args.repeats else "NO"))
        listed, kept = int8_fallbacks(folder, args.threads)
        rows.append(("INT8 float nodes listed", ", ".join(sorted(listed)) or "-", "", f"kept float: {sorted(kept)}",
                     "equal", "yes" if listed == kept else "NO"))
        ratios, rounds = overhead(teacher, args.threads, 3)
        same = all(a == b for a, b in rounds)
        rows.append(("wall time with / without layers", f"{statistics.median(ratios):.3f}", spread(ratios),
                     f"judged rounds {rounds}", "<= 1.2, same rounds",
                     "yes" if statistics.median(ratios) <= 1.2 and same else "NO"))
    print(f"attribution_check · {started} · {os.cpu_count()} CPUs · threads {args.threads} · "
          f"load average {load_start} at the start, {load()} at the end")
    widths = [max(len(str(r[i])) for r in rows) for i in range(6)]
    header = ("check", "median", "spread", "detail", "goal", "met")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    for row in (header, *rows):
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
