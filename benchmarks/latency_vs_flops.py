"""At one measured latency budget: uniform-ratio vs FLOPs-driven vs latency-aware channel allocation.

The model (the demo's ``digits_resnet`` at 1x1x32x32, or torchvision ``mobilenet_v2`` at
1x3x64x64, randomly initialised: only shapes matter here) is measured on ONNX Runtime CPU; the
budget is ``--budget`` times its latency on ``--statistic`` (default: the fastest run, which other
processes on a shared machine disturb least; ``p50`` on a quiet one). Each method searches its own
knob for the least pruning whose *measured* latency meets the budget:

- uniform: the same L1 ratio removed from every group (NNI's and Torch-Pruning's default), ratio bisected;
- FLOPs-driven: the knapsack of ``pipeline.prune.latency_aware`` priced in MACs, MACs target bisected;
- latency-aware: the same knapsack priced in predicted latency (operator table + calibrated
  predictor), its target corrected by each measured miss (a NetAdapt-style feedback loop).

The three finalists and the unpruned model are then measured again together, interleaved
(``--rounds`` passes, the lowest p50 and fastest run of each kept), and printed
with their MACs and parameters: at equal latency, more MACs and parameters kept is more capacity
left for distillation to recover accuracy.

    .venv/bin/python benchmarks/latency_vs_flops.py [--architecture digits_resnet] [--budget 0.5]
        [--threads 1] [--rounds 5] [--statistic min] [--cache-dir DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from deploy.fingerprint import cpu_model
from deploy.profiler import ProfileSettings, profile_model
from kernels.layers import torch_layers
from kernels.predictor import LatencyPredictor
from kernels.table import LatencyTable, default_cache_dir
from pipeline.export import export_onnx
from pipeline.prune import PruneConfig, PruningPlan, apply_plan, plan_pruning
from pipeline.prune.latency_aware import plan_for_latency
from pipeline.zoo.digits_resnet import digits_resnet

SETTINGS = ProfileSettings(warmup_s=0.1, min_samples=30, min_duration_s=0.3, max_duration_s=2.0, ci_rel=float("inf"))
STATISTICS = ("p50", "min")
ARCHITECTURES = {
    "digits_resnet": (lambda: digits_resnet(), (1, 1, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), (1, 3, 64, 64)),
}
SEARCH_ROUNDS = 3
BISECTION_STEPS = 5
FEEDBACK_STEPS = 4
MAX_RATIO = 0.9


class Bench:
    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int, statistic: str, work: Path) -> None:
        self.model, self.x, self.threads, self.statistic, self.work = model, x, threads, statistic, work
        self.count = 0

    def export(self, plan: PruningPlan | None) -> tuple[nn.Module, Path]:
        model = copy.deepcopy(self.model)
        if plan is not None:
            apply_plan(model, plan, self.x)
        self.count += 1
        return model, export_onnx(model, self.x, self.work / f"candidate-{self.count}.onnx")

    def stats(self, paths: list[Path], rounds: int) -> dict[str, list[float]]:
        """Each model's p50 and min, each the lowest over ``rounds`` interleaved passes."""
        best = {stat: [float("inf")] * len(paths) for stat in STATISTICS}
        for _ in range(rounds):
            for i, path in enumerate(paths):
                profile = profile_model(path, "ort-cpu", threads=self.threads, settings=SETTINGS)
                for stat in STATISTICS:
                    best[stat][i] = min(best[stat][i], profile.stat(stat))
        return best

    def measure(self, plan: PruningPlan) -> tuple[nn.Module, Path, float]:
        """The pruned model, its ONNX file and its latency on the search statistic."""
        model, path = self.export(plan)
        return model, path, self.stats([path], SEARCH_ROUNDS)[self.statistic][0]


def bisect(bench: Bench, make_plan: Callable[[float], PruningPlan], low: float, high: float, budget: float,
           less_pruning_is_higher: bool) -> tuple[PruningPlan, float, list[dict]]:
    """The knob value (in [low, high]) with the least pruning whose measured latency meets ``budget``.

    ``less_pruning_is_higher``: the knob is a kept fraction (True) or a removed ratio (False).
    """
    probes, best = [], None
    for _ in range(BISECTION_STEPS):
        knob = (low + high) / 2
        plan = make_plan(knob)
        _, _, ms = bench.measure(plan)
        probes.append({"knob": round(knob, 4), "ms": ms})
        if ms <= budget:
            best = (plan, knob)
            low, high = (knob, high) if less_pruning_is_higher else (low, knob)
        else:
            low, high = (low, knob) if less_pruning_is_higher else (knob, high)
    if best is None:  # nothing met it: report the most pruned probe
        best = (make_plan(low if less_pruning_is_higher else high), low if less_pruning_is_higher else high)
    return best[0], best[1], probes


def latency_feedback(bench: Bench, predictor: LatencyPredictor, base_layers, base_ms: float, budget: float,
                     cfg: PruneConfig) -> tuple[PruningPlan, float, list[dict]]:
    """Allocate for the budget, measure, recalibrate on the measurement, retarget by the miss."""
    samples = [(base_layers, base_ms)]
    predictor.calibrate(samples)
    target, probes, best = budget, [], None
    for _ in range(FEEDBACK_STEPS):
        allocation = plan_for_latency(bench.model, bench.x, cfg, target, predictor=predictor)
        model, _, ms = bench.measure(allocation.plan)
        probes.append({"target_ms": round(target, 4), "predicted_ms": allocation.predicted, "ms": ms})
        if ms <= budget and (best is None or removed_channels(allocation.plan) < removed_channels(best[0])):
            best = (allocation.plan, target)
        samples.append((torch_layers(model, bench.x), ms))
        predictor.calibrate(samples)
        if ms <= budget and ms >= 0.97 * budget:
            break
        target *= budget / ms
    if best is None:
        best = (allocation.plan, target)
    return best[0], best[1], probes


def removed_channels(plan: PruningPlan) -> int:
    return sum(len(group.removed) for group in plan.groups)


def macs_and_params(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    return sum(l.op.macs() for l in torch_layers(model, x)), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="digits_resnet", choices=list(ARCHITECTURES))
    parser.add_argument(
        "--budget", type=float, default=0.5, help="latency budget as a fraction of the unpruned model's"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes of the final measurement")
    parser.add_argument(
        "--statistic", default="min", choices=STATISTICS,
        help="what the budget is on: p50, or (default) the fastest run, which other processes disturb least",
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    factory, shape = ARCHITECTURES[args.architecture]
    torch.manual_seed(0)
    model, x = factory().eval(), torch.zeros(shape)
    predictor = LatencyPredictor(LatencyTable("ort-cpu", threads=args.threads, cache_dir=args.cache_dir))
    with tempfile.TemporaryDirectory(prefix="spiral-latency-vs-flops-") as tmp:
        bench = Bench(model, x, args.threads, args.statistic, Path(tmp))
        _, base_path = bench.export(None)
        base_ms = bench.stats([base_path], SEARCH_ROUNDS)[args.statistic][0]
        budget = args.budget * base_ms
        base_macs, base_params = macs_and_params(model, x)
        cfg = PruneConfig(criterion="l1")
        results = {}
        results["uniform L1 ratio"] = bisect(
            bench, lambda r: plan_pruning(model, x, cfg.model_copy(update={"ratio": r})), 0.0, MAX_RATIO, budget, False
        )
        results["FLOPs-driven (MACs knapsack)"] = bisect(
            bench, lambda f: plan_for_latency(model, x, cfg, f * base_macs, cost="macs").plan, 1 - MAX_RATIO, 1.0,
            budget, True,
        )
        results["latency-aware (latency knapsack)"] = latency_feedback(
            bench, predictor, torch_layers(model, x), base_ms, budget, cfg
        )
        finals = {name: bench.export(plan) for name, (plan, _, _) in results.items()}
        measured = bench.stats([base_path, *(path for _, path in finals.values())], args.rounds)
    rows = [{"method": "unpruned", "macs": base_macs, "params": base_params}]
    for (name, (plan, knob, probes)), (pruned, _) in zip(results.items(), finals.values()):
        macs, params = macs_and_params(pruned, x)
        rows.append({"method": name, "knob": knob, "macs": macs, "params": params, "probes": probes,
                     "channels_removed": removed_channels(plan)})
    for i, row in enumerate(rows):
        row.update({f"{stat}_ms": measured[stat][i] for stat in STATISTICS})
    print(
        f"{args.architecture} {list(shape)} · ONNX Runtime CPU, {args.threads} thread(s), batch 1 · {cpu_model()}, "
        f"{os.cpu_count()} logical cores shared with other work (load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"budget on {args.statistic}: {args.budget:.0%} of the unpruned model's, measured during the search "
        f"({base_ms:.3f} ms) = {budget:.3f} ms; final columns: each the lowest of {args.rounds} interleaved passes\n"
    )
    print("| method | knob | p50 ms | min ms | meets budget | MACs (M) | params (M) | MACs kept | params kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        knob = f"{row['knob']:.3f}" if "knob" in row else ""
        meets = "" if row["method"] == "unpruned" else ("yes" if row[f"{args.statistic}_ms"] <= budget else "no")
        print(
            f"| {row['method']} | {knob} | {row['p50_ms']:.3f} | {row['min_ms']:.3f} | {meets} "
            f"| {row['macs'] / 1e6:.1f} | "
            f"{row['params'] / 1e6:.3f} | {row['macs'] / base_macs:.0%} | {row['params'] / base_params:.0%} |"
        )
    print("\nknob: removed ratio (uniform), kept MACs fraction (FLOPs-driven), latency target ms (latency-aware)")
    print(f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(
            {"architecture": args.architecture, "statistic": args.statistic, "budget_ms": budget, "rows": rows},
            indent=2,
        ))


if __name__ == "__main__":
    main()
