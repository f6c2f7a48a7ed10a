"""At one measured latency budget: uniform L1 vs FLOPs-driven vs the spiral's latency-aware step, each distilled.

For each architecture a teacher is trained on real data and cached under ``--cache`` (safetensors):

- ``digits_resnet``: the demo's model (width 48) on scikit-learn's digits at 1x1x32x32, trained as
  ``pipeline/configs/demo.yaml``'s ``teacher_training``;
- ``mobilenet_v2``: torchvision's, 10 classes, on Fashion-MNIST at 1x3x32x32 (Debian's
  ``dataset-fashion-mnist`` written out by ``spiralprune.pipeline.casestudies.images``: 5,000 train and 1,000
  validation images), trained as ``examples/image/config.yaml``'s ``teacher_training``.

The budget is ``--budget`` times the teacher's latency on ``--statistic`` (ONNX Runtime CPU, ``--threads``,
batch 1). Each method searches its own knob for the least pruning whose *measured* latency meets the
budget, all with the L1 criterion and the same ``--round-to``:

(a) uniform: one L1 ratio removed from every group (NNI's and Torch-Pruning's default), ratio bisected;
(b) FLOPs-driven: the knapsack of ``spiralprune.pipeline.prune.latency_aware`` priced in MACs, MACs target bisected;
(c) latency-aware: the spiral step's own search, ``spiralprune.pipeline.passes.steps.plan_search.choose_plan`` (latency-knapsack
    plans screened by the calibrated operator-table predictor, only the promising ones measured).

Every finalist is then distilled from the teacher with ``demo.yaml``'s ``distill`` settings (one run
per ``--seeds`` seed), exported to ONNX, measured together with the teacher in ``--rounds``
interleaved passes (the table gives the median pass and the range) and evaluated on the validation
set through ONNX Runtime. Prints a Markdown table per architecture, writes a Pareto plot (accuracy
vs latency) to ``--plot-dir``/pareto_<architecture>.png and every number to ``--json``. The
operator latency table is cached where ``spiral`` keeps it (``SPIRAL_KERNELS_CACHE``).
``--quick`` proves the whole path in minutes (256 training images, one epoch each, two rounds);
its numbers mean nothing. Run the full benchmark on a quiet machine: other processes distort the
latencies, and two torch threads sharing two busy cores train many times slower.

    .venv/bin/python benchmarks/pruning_side_by_side.py [--architecture digits_resnet mobilenet_v2]
        [--budget 0.5] [--threads 1] [--rounds 7] [--seeds 1] [--round-to 8] [--statistic p50]
        [--cache runs/side-by-side] [--plot-dir docs] [--json results.json] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

from spiralprune.core.atomic import write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.deploy.fingerprint import cpu_model
from spiralprune.deploy.profiler import ProfileSettings, profile_model
from spiralprune.kernels.layers import torch_layers
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.casestudies.images import build_image_folder
from spiralprune.pipeline.config import DistributedConfig, load_config
from spiralprune.pipeline.data import load_datasets
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.train import distill
from spiralprune.pipeline.evaluate import evaluate_onnx
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.passes.steps.plan_search import PlanVerdict, choose_plan
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan, apply_plan
from spiralprune.pipeline.prune.latency_aware import plans_for_latency
from spiralprune.pipeline.report.plots import ParetoPoint, pareto_front
from spiralprune.pipeline.tasks import TaskConfig, build_task
from spiralprune.pipeline.training import Processes
from spiralprune.pipeline.teacher import trained_model

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "pipeline" / "configs" / "demo.yaml"
IMAGE_CONFIG = ROOT / "examples" / "image" / "config.yaml"
SETTINGS = ProfileSettings(warmup_s=0.1, block_s=0.0, block_calls=3, min_rounds=10, min_duration_s=0.3,
                           max_duration_s=2.0, ci_rel=float("inf"))
STATISTICS = ("p50", "min")
NUM_CLASSES = 10
SEARCH_ROUNDS = 3
BISECTION_STEPS = 5
MAX_RATIO = 0.9
CALIBRATION_BATCHES = 4
QUICK_SAMPLES = 256
QUICK_ROUNDS = 2


@dataclass(frozen=True)
class Architecture:
    model: str
    input_shape: tuple[int, int, int, int]
    data: Callable[[], str]  # the source for ``load_datasets``, built on first use
    data_name: str
    teacher_config: Path  # the run config whose ``teacher_training`` trains the teacher


ARCHITECTURES = {
    "digits_resnet": Architecture(
        "spiralprune.pipeline.zoo.digits_resnet:digits_resnet", (1, 1, 32, 32), lambda: "digits", "scikit-learn digits", DEMO_CONFIG
    ),
    "mobilenet_v2": Architecture(
        "torchvision:mobilenet_v2?num_classes=10", (1, 3, 32, 32), lambda: str(build_image_folder()), "Fashion-MNIST",
        IMAGE_CONFIG,
    ),
}
METHODS = {  # name -> (short label for the plot, what its knob is)
    "uniform L1 ratio": ("uniform L1", "removed ratio"),
    "FLOPs-driven (MACs knapsack)": ("FLOPs-driven", "kept MACs fraction"),
    "latency-aware (spiral step)": ("latency-aware", "predicted ms"),
}


class Bench:
    """Exports one model's pruned variants and measures them on ONNX Runtime CPU."""

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int, statistic: str, search_rounds: int,
                 work: Path) -> None:
        self.model, self.x, self.threads, self.statistic = model, x, threads, statistic
        self.search_rounds, self.work = search_rounds, work
        self.count = 0

    def pruned(self, plan: PruningPlan) -> nn.Module:
        model = copy.deepcopy(self.model)
        apply_plan(model, plan, self.x)
        return model

    def export(self, model: nn.Module, name: str) -> Path:
        self.count += 1
        return export_onnx(model, self.x, self.work / f"{self.count:03d}-{name}.onnx")

    def rounds(self, paths: list[Path], rounds: int) -> list[list[float]]:
        """Each model's statistic in each of ``rounds`` passes over all of them (interleaved)."""
        values: list[list[float]] = [[] for _ in paths]
        for _ in range(rounds):
            for i, path in enumerate(paths):
                profile = profile_model(path, "ort-cpu", threads=self.threads, settings=SETTINGS)
                values[i].append(profile.stat(self.statistic))
        return values

    def measure(self, plan: PruningPlan) -> float:
        """The pruned model's statistic, median of the search passes."""
        path = self.export(self.pruned(plan), "probe")
        ms = statistics.median(self.rounds([path], self.search_rounds)[0])
        path.unlink()
        return ms


def judged(ms: float, budget: float) -> PlanVerdict:
    """A plan measured at ``ms`` against ``budget``, as the spiral step's search reads a verdict."""
    return PlanVerdict(ms, "meets" if ms <= budget else "misses", budget / ms)


def bisect(bench: Bench, make_plan: Callable[[float], PruningPlan], low: float, high: float, budget: float,
           less_pruning_is_higher: bool) -> tuple[PruningPlan, float, list[dict]]:
    """The knob value (in [low, high]) with the least pruning whose measured latency meets ``budget``.

    ``less_pruning_is_higher``: the knob is a kept fraction (True) or a removed ratio (False).
    """
    probes, best = [], None
    for _ in range(BISECTION_STEPS):
        knob = (low + high) / 2
        plan = make_plan(knob)
        ms = bench.measure(plan)
        probes.append({"knob": round(knob, 4), "ms": ms})
        if ms <= budget:
            best = (plan, knob)
            low, high = (knob, high) if less_pruning_is_higher else (low, knob)
        else:
            low, high = (low, knob) if less_pruning_is_higher else (knob, high)
    if best is None:  # nothing met it: the most pruned end of the range
        knob = low if less_pruning_is_higher else high
        best = (make_plan(knob), knob)
    return best[0], best[1], probes


def search(bench: Bench, cfg: PruneConfig, teacher_ms: float, budget: float, calibration: list,
           predictor: LatencyPredictor) -> dict[str, tuple[PruningPlan, float, list[dict], float]]:
    """Each method's plan, knob, measured probes and search seconds."""
    model, x = bench.model, bench.x
    base_macs = macs_and_params(model, x)[0]
    prunable = PrunableModel(model, x)

    def uniform() -> tuple[PruningPlan, float, list[dict]]:
        return bisect(
            bench, lambda r: prunable.uniform_plan(cfg.model_copy(update={"ratio": r}), calibration),
            0.0, MAX_RATIO, budget, False,
        )

    def flops() -> tuple[PruningPlan, float, list[dict]]:
        return bisect(
            bench, lambda f: plans_for_latency(
                prunable, cfg, [f * base_macs], cost="macs", calibration=calibration, max_group_ratio=MAX_RATIO
            )[0].plan,
            1 - MAX_RATIO, 1.0, budget, True,
        )

    def latency_aware() -> tuple[PruningPlan, float, list[dict]]:
        choice = choose_plan(
            prunable, goal_ms=budget, current_ms=teacher_ms, prune=cfg,
            schedule=ScheduleConfig(allocation="latency", max_ratio=MAX_RATIO), predictor=predictor,
            calibration=calibration, measure=lambda plan: judged(bench.measure(plan), budget),
        )
        measured = [{"knob": c["predicted_ms"], "ms": c["ms"]} for c in choice.plans if c["ms"] is not None]
        return choice.plan, choice.predicted_ms, measured

    found = {}
    for method, run in zip(METHODS, (uniform, flops, latency_aware)):
        started = time.perf_counter()
        found[method] = (*run(), time.perf_counter() - started)
    return found


def removed_channels(plan: PruningPlan) -> int:
    return sum(len(group.removed) for group in plan.groups)


def macs_and_params(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    return sum(l.op.macs() for l in torch_layers(model, x)), sum(p.numel() for p in model.parameters())


def in_memory(dataset: Dataset) -> Dataset:
    """Decode an image folder once instead of once per epoch."""
    if isinstance(dataset, TensorDataset):
        return dataset
    return TensorDataset(*default_collate([dataset[i] for i in range(len(dataset))]))


def load_data(arch: Architecture, quick: bool) -> tuple[Dataset, Dataset]:
    train, val = (in_memory(d) for d in load_datasets(arch.data(), list(arch.input_shape)))
    if quick:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        train = Subset(train, order[:QUICK_SAMPLES].tolist())
    return train, val


def trained_teacher(name: str, arch: Architecture, train: Dataset, val: Dataset, cfg: DistillConfig, cache: Path,
                    device: str, progress: Progress) -> tuple[nn.Module, dict]:
    """The teacher from ``cache`` when one was trained with the same settings, else trained and saved there."""
    key = {"model": arch.model, "input_shape": list(arch.input_shape), "data": arch.data_name,
           "train_samples": len(train), "training": cfg.model_dump(mode="json")}

    def build() -> tuple[nn.Module, str, list]:
        torch.manual_seed(0)
        return build_model(arch.model), arch.model, []

    # one process on ``device``: a Processes whose data, task and classes no torchrun job reads
    where = Processes(DistributedConfig(device=device), None, TaskConfig(), 10, list(arch.input_shape), "float32")
    teacher = trained_model(cache / "teachers" / name, key, build, train, val, cfg, input_shape=list(arch.input_shape),
                            console=progress.console, progress=progress, processes=where)
    return teacher.module, teacher.metadata | {"cached": not teacher.trained_now}


def run_architecture(name: str, args: argparse.Namespace, progress: Progress) -> dict:
    arch = ARCHITECTURES[name]
    started = time.perf_counter()
    train, val = load_data(arch, args.quick)
    epochs = {"epochs": 1} if args.quick else {}
    teacher_cfg = load_config(arch.teacher_config).teacher_training.model_copy(update=epochs)
    distill_cfg = load_config(DEMO_CONFIG).distill.model_copy(update=epochs)
    teacher, teacher_record = trained_teacher(name, arch, train, val, teacher_cfg, args.cache, args.device, progress)
    x = next(iter(DataLoader(val, batch_size=1)))[0]
    loader = DataLoader(train, batch_size=distill_cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    calibration = [batch for _, batch in zip(range(CALIBRATION_BATCHES), loader)]
    rounds = QUICK_ROUNDS if args.quick else args.rounds
    timings = {"data_and_teacher_s": time.perf_counter() - started}
    with tempfile.TemporaryDirectory(prefix="spiral-side-by-side-") as tmp:
        bench = Bench(teacher, x, args.threads, args.statistic, 1 if args.quick else SEARCH_ROUNDS, Path(tmp))
        teacher_path = bench.export(teacher, "teacher")
        teacher_ms = statistics.median(bench.rounds([teacher_path], rounds)[0])
        budget = args.budget * teacher_ms
        progress.console.print(
            f"{name}: teacher {args.statistic} {teacher_ms:.3f} ms, budget {budget:.3f} ms; searching each method"
        )
        cfg = PruneConfig(criterion="l1", round_to=args.round_to or None)
        predictor = LatencyPredictor(LatencyTable("ort-cpu", threads=args.threads))
        found = search(bench, cfg, teacher_ms, budget, calibration, predictor)
        methods, finals = [], []
        for method, (plan, knob, probes, search_s) in found.items():
            pruned = bench.pruned(plan)
            pruned_accuracy = evaluate_onnx(bench.export(pruned, "pruned"), val, build_task(TaskConfig(), NUM_CLASSES))["accuracy"]
            runs = []
            for seed in range(args.seeds):
                progress.console.print(
                    f"{name}: {method}: removed {plan.ratio:.0%} of the channels; distilling, seed {seed}"
                )
                student = copy.deepcopy(pruned)
                mark = time.perf_counter()
                result = distill(student, teacher, train, val, distill_cfg.model_copy(update={"seed": seed}),
                                 progress=progress, device=DistributedConfig(device=args.device).training_device())
                student.cpu()
                teacher.cpu()
                path = bench.export(student, f"distilled-{seed}")
                runs.append({
                    "seed": seed, "accuracy": evaluate_onnx(path, val, build_task(TaskConfig(), NUM_CLASSES))["accuracy"],
                    "best_val_accuracy_torch": result.best_val_quality, "seconds": time.perf_counter() - mark,
                    "epoch_seconds": [h["seconds"] for h in result.history],
                })
                if seed == 0:
                    finals.append(path)
            macs, params = macs_and_params(pruned, x)
            methods.append({
                "method": method, "knob": knob, "knob_is": METHODS[method][1], "probes": probes, "search_s": search_s,
                "channels_removed": removed_channels(plan), "ratio": plan.ratio, "macs": macs, "params": params,
                "accuracy_as_pruned": pruned_accuracy, "runs": runs, "plan": plan.to_dict(),
            })
        timings["search_s"] = sum(m["search_s"] for m in methods)
        timings["distill_s"] = sum(r["seconds"] for m in methods for r in m["runs"])
        progress.console.print(f"{name}: measuring the teacher and the distilled students, {rounds} interleaved passes")
        mark = time.perf_counter()
        measured = bench.rounds([teacher_path, *finals], rounds)
        timings["final_measurement_s"] = time.perf_counter() - mark
        teacher_accuracy = evaluate_onnx(teacher_path, val, build_task(TaskConfig(), NUM_CLASSES))["accuracy"]
    macs, params = macs_and_params(teacher, x)
    for row, values in zip(methods, measured[1:]):
        # Judged on the speedup over the teacher measured in the same passes, so that a machine that got
        # slower or faster since the budget was set moves both sides of the comparison.
        row["ms"] = values
        row["speedup"] = statistics.median(t / v for t, v in zip(measured[0], values))
        row["meets_budget"] = row["speedup"] >= teacher_ms / budget
    timings["total_s"] = time.perf_counter() - started
    return {
        "architecture": name, "model": arch.model, "input_shape": list(arch.input_shape), "data": arch.data_name,
        "train_samples": len(train), "val_samples": len(val), "teacher_training": teacher_cfg.model_dump(mode="json"),
        "distill": distill_cfg.model_dump(mode="json"), "budget_ms": budget, "teacher_search_ms": teacher_ms,
        "teacher": teacher_record | {"accuracy": teacher_accuracy, "macs": macs, "params": params, "ms": measured[0]},
        "methods": methods, "rounds": rounds, "timings": timings,
    }


def percent(runs: list[dict]) -> str:
    values = [100 * r["accuracy"] for r in runs]
    if len(values) == 1:
        return f"{values[0]:.2f} %"
    return f"{statistics.mean(values):.2f} % ± {statistics.stdev(values):.2f} ({len(values)} seeds)"


def latency(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def table(result: dict, args: argparse.Namespace) -> str:
    teacher = result["teacher"]
    distill_cfg = result["distill"]
    shape = "×".join(map(str, result["input_shape"]))
    setup = (
        f"**{result['architecture']}** {shape}, {result['data']} ({result['train_samples']} train / "
        f"{result['val_samples']} val images); budget {args.budget:.0%} of the teacher's {args.statistic} "
        f"({result['teacher_search_ms']:.3f} ms before the search) = {result['budget_ms']:.3f} ms; L1 criterion, "
        f"round_to {args.round_to or 'none'}; each finalist distilled for {distill_cfg['epochs']} epoch(s) "
        f"(lr {distill_cfg['lr']}, T {distill_cfg['temperature']}, ce {distill_cfg['weights']['ce']} + logits "
        f"{distill_cfg['weights']['logits']}); ONNX Runtime CPU, {args.threads} thread(s), batch 1; "
        f"{args.statistic} = median of {result['rounds']} interleaved passes (min–max); speedup = median over "
        "the passes of teacher / student, and the budget is met when it reaches 1 / budget; accuracy through "
        "ONNX Runtime on the validation set."
    )
    header = (
        f"| method | channels removed | MACs kept | params kept | {args.statistic} ms | speedup | meets budget "
        "| accuracy as pruned | accuracy distilled | search |"
    )
    first = (
        f"| teacher | 0 | 100 % ({teacher['macs'] / 1e6:.1f} M) | 100 % ({teacher['params'] / 1e6:.3f} M) "
        f"| {latency(teacher['ms'])} | 1.00× | | | {100 * teacher['accuracy']:.2f} % | |"
    )
    lines = [setup, "", header, "|---|---|---|---|---|---|---|---|---|---|", first]
    for m in result["methods"]:
        knob = f"{m['knob_is']} {m['knob']:.3f} ({len(m['probes'])} measured, {m['search_s']:.0f} s)"
        lines.append(
            f"| {m['method']} | {m['channels_removed']} ({100 * m['ratio']:.0f} %) "
            f"| {100 * m['macs'] / teacher['macs']:.0f} % | {100 * m['params'] / teacher['params']:.0f} % "
            f"| {latency(m['ms'])} "
            f"| {m['speedup']:.2f}× | {'yes' if m['meets_budget'] else 'no'} "
            f"| {100 * m['accuracy_as_pruned']:.2f} % | {percent(m['runs'])} | {knob} |"
        )
    return "\n".join(lines)


def write_pareto(result: dict, statistic: str, directory: Path) -> Path:
    teacher = result["teacher"]
    points = [ParetoPoint("teacher", statistics.median(teacher["ms"]), 100 * teacher["accuracy"], "baseline")]
    for m in result["methods"]:
        accuracy = statistics.mean(100 * r["accuracy"] for r in m["runs"])
        kind = "accepted" if m["meets_budget"] else "rejected"
        points.append(ParetoPoint(METHODS[m["method"]][0], statistics.median(m["ms"]), accuracy, kind))
    uri = pareto_front(points, statistic)
    path = directory / f"pareto_{result['architecture']}.png"
    write_bytes(path, base64.b64decode(uri.split(",", 1)[1]))
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--budget", type=float, default=0.5, help="latency budget as a fraction of the teacher's")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime CPU threads")
    parser.add_argument(
        "--rounds", type=int, default=7,
        help="passes of the teacher's budget measurement and of the final, interleaved one"
    )
    parser.add_argument("--seeds", type=int, default=1, help="distillation runs per method (seeds 0..N-1)")
    parser.add_argument("--round-to", type=int, default=8, help="kept channel counts a multiple of this (0: none)")
    parser.add_argument("--statistic", default="p50", choices=STATISTICS,
                        help="what the budget is on: p50, or the fastest run (which other processes disturb least)")
    parser.add_argument("--cache", type=Path, default=Path("runs/side-by-side"), help="trained teachers are kept here")
    parser.add_argument("--plot-dir", type=Path, default=None,
                        help="where pareto_<architecture>.png go (default: docs/, or the cache with --quick)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                        help="where the teacher trains and the students distil")
    parser.add_argument("--quick", action="store_true",
                        help="prove the path: 256 training images, one epoch, two rounds (meaningless numbers)")
    args = parser.parse_args(argv)
    if not 0 < args.budget < 1:
        parser.error("--budget must be between 0 and 1")
    if min(args.threads, args.rounds, args.seeds) < 1 or args.round_to < 0:
        parser.error("--threads, --rounds and --seeds must be at least 1, --round-to at least 0")
    if args.plot_dir is None:
        args.plot_dir = args.cache / "quick-plots" if args.quick else ROOT / "docs"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    console = Console(stderr=True)
    results = []
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
            for name in args.architecture:
                results.append(run_architecture(name, args, progress))
                plot = write_pareto(results[-1], args.statistic, args.plot_dir)
                progress.console.print(f"{name}: Pareto plot written to {plot}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    machine = {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0], "torch": torch.__version__, "seconds": time.perf_counter() - start,
    }
    print(f"{machine['cpu']}, {machine['logical_cores']} logical cores, load average {load_before:.1f} before and "
          f"{machine['load_average_after']:.1f} after; {machine['seconds']:.0f} s in all"
          + (" (--quick: the numbers mean nothing)" if args.quick else "") + "\n")
    for result in results:
        print(table(result, args))
        t = result["timings"]
        arch = result["architecture"]
        print(f"\n![accuracy vs {args.statistic}: {arch}](docs/pareto_{arch}.png)\n")
        teacher = "cached" if result["teacher"]["cached"] else "trained"
        print(f"time: data and teacher {t['data_and_teacher_s']:.0f} s ({teacher}), "
              f"search {t['search_s']:.0f} s, distillation {t['distill_s']:.0f} s, final measurement "
              f"{t['final_measurement_s']:.0f} s, total {t['total_s']:.0f} s\n")
    if args.json:
        write_json(args.json, {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()},
                               "architectures": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
