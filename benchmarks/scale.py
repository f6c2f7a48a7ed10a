"""How one spiral step scales with processes (issue 36 item 5): wall time by phase at 1 and 2 processes.

One step of a torchvision ResNet-50 at 224x224 (default; ``--model resnet18`` and ``--size`` for a quicker
one) on synthetic ImageFolder images, or of the detection case's model (``--model detection``:
``examples/detection/config.yaml``, its 64x64 scenes), with the ``sensitivity`` criterion, on ONNX Runtime
CPU. Every repeat runs each process count in a child process of its own (the order alternating between
repeats), which:

1. trains the teacher for ``--epochs`` as a run does (``spiralprune.pipeline.training.train`` without a
   teacher, across the processes): *teacher training*;
2. runs ``spiralprune run`` for one step from a teacher trained once beforehand (the same for every child,
   so their scores and plans are comparable), its wall time split by timers wrapped around the functions
   that do each phase: *scoring* (``spiralprune.pipeline.scoring.score``: the criterion's scores and the
   residual blocks' loss rises, a torchrun job at 2 processes), *table* (``LatencyTable._time``: operators
   timed alone on the target, from an empty table), *measurement* (the teacher's profile and the plans'
   paired sessions), *distillation* (the try's training); *other* is the rest of the run (data, tracing,
   knapsack, export, parity, evaluation).

The table has the median over repeats of each phase [min .. max], the ratio of the medians (1 / 2), the
load average at the start and the end, and the peak RSS (VmHWM) of each kind of process: the run's own and
the largest of its torchrun workers (polled from /proc). Scoring at 2 processes must give the scores of 1
up to float order: the largest relative difference of every child's scores and rises from the first's,
and whether the plans they decide without measuring (the MAC knapsack at 0.7, 0.5 and 0.3 of the model's
MACs with blocks, and a global ratio of 0.5) are the same, are printed below the table.

    nice -n 19 .venv/bin/python benchmarks/scale.py                                  # ResNet-50 at 224
    nice -n 19 .venv/bin/python benchmarks/scale.py --model resnet18 --size 64 --images 64 --repeats 1
    nice -n 19 .venv/bin/python benchmarks/scale.py --model detection
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("teacher training", "scoring", "table", "measurement", "distillation", "other", "total")
WORKERS = {"scoring": b"spiralprune.pipeline.scoring", "training": b"spiralprune.pipeline.distill.ddp"}
CLASSES = 10


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def image_folder(root: Path, size: int, images: int) -> Path:
    """``images`` random RGB images per split, ``CLASSES`` classes, ``size`` x ``size`` PNG."""
    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", max(CLASSES, images // 4))):
        for i in range(count):
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def base_config(args: argparse.Namespace, work: Path) -> dict:
    """The run config of the benchmark's step, its teacher training included (taken out for the run)."""
    epochs = {"epochs": args.epochs, "early_stopping_patience": None}
    if args.model == "detection":
        config = yaml.safe_load((ROOT / "examples" / "detection" / "config.yaml").read_text())
        config["teacher_training"].update(epochs)
        config["distill"].update(epochs)
        config["schedule"] = {"final_epochs": 0, "max_steps": 1, "patience": 0}
        return config
    data = image_folder(work / "images", args.size, args.images)
    return {
        "version": 2,
        "model": f"torchvision:{args.model}?num_classes={CLASSES}",
        "data": {"source": str(data), "batch_size": args.batch},
        "input_shape": [1, 3, args.size, args.size],
        "num_classes": CLASSES,
        "teacher_training": {"batch_size": args.batch, "lr": 0.01, **epochs},
        "target": {"backend": "ort-cpu", "threads": 2},
        "budget": {"latency": {"statistic": "p50", "min_speedup": 1.3}, "accuracy": {"min": 0.0}},
        "schedule": {"max_steps": 1, "patience": 0},
        "prune": {"criterion": "sensitivity"},
        "distill": {"batch_size": args.batch, "lr": 0.01, **epochs},
    }


def teacher_checkpoint(config: dict, work: Path) -> Path:
    """The run's model trained once (1 process) as its teacher and saved: every child starts from it."""
    from spiralprune.pipeline.checkpoint import save_checkpoint
    from spiralprune.pipeline.config import RunConfig
    from spiralprune.pipeline.data import load_data
    from spiralprune.pipeline.source import load_source
    from spiralprune.pipeline.training import Trainee, train

    cfg = RunConfig.model_validate(config)
    data = load_data(cfg.data, cfg.input_shape)
    task = cfg.task_model()
    torch.manual_seed(cfg.seed)
    model = load_source(cfg.model).module
    train(Trainee(model, (cfg.model, [])), None, data.train, data.val, cfg.teacher_training, job_dir=work / "job",
          loading=data.loading.for_task(task), task=task)
    save_checkpoint(work / "teacher", base_spec=cfg.model, plans=[], model=model, input_shape=cfg.input_shape)
    return work / "teacher"


def _peak_rss_mb(pid: int | str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _poll_workers(peaks: dict[str, dict[int, float]], stop: threading.Event) -> None:
    """The peak RSS of every torchrun worker of a scoring or training job, by kind, until ``stop``."""
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                command = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            for kind, module in WORKERS.items():
                if module in command and b"torch.distributed.run" not in command:
                    rss = _peak_rss_mb(proc.name)
                    if rss is not None:
                        peaks[kind][int(proc.name)] = max(rss, peaks[kind].get(int(proc.name), 0.0))
        stop.wait(0.2)


def child(config: dict, teacher: Path, processes: int, work: Path) -> dict:
    """One repeat at ``processes``: the teacher's training, then one step of ``spiralprune run`` (module doc)."""
    from spiralprune.kernels import table
    from spiralprune.pipeline import teacher as run_teacher
    from spiralprune.pipeline.cli import main
    from spiralprune.pipeline.config import RunConfig
    from spiralprune.pipeline.data import load_data
    from spiralprune.pipeline.passes.steps import tries
    from spiralprune.pipeline.prune import PruneConfig, PruningPlan
    from spiralprune.pipeline.prune.latency_aware import plans_for_latency
    from spiralprune.pipeline.source import load_source
    from spiralprune.pipeline.training import Processes, Trainee, train

    os.environ["SPIRAL_KERNELS_CACHE"] = str(work / "kernels")  # every child times its table from empty
    seconds: dict[str, float] = defaultdict(float)
    found: dict = {}

    def timed(owner: object, name: str, phase_of) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[phase_of(*args, **kwargs)] += time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(run_teacher, "train", lambda student, teacher, *a, **k: "distillation" if teacher else "teacher training")
    timed(tries, "measure_paired", lambda *a, **k: "measurement")
    timed(run_teacher, "profile_on_target", lambda *a, **k: "measurement")
    timed(table.LatencyTable, "_time", lambda *a, **k: "table")

    def scored(prunable, model, cfg, calibration, **kwargs) -> None:
        start = time.perf_counter()
        original_score(prunable, model, cfg, calibration, **kwargs)
        seconds["scoring"] += time.perf_counter() - start
        macs = sum(layer.op.macs() for layer in prunable.layers(PruningPlan(cfg.criterion, 0.0, ())))
        found["scores"] = {g.root: s.tolist() for g, s in prunable.scored(cfg, None) if s is not None}
        found["rises"] = prunable.block_rises(None) if prunable.kept(cfg, rises=True) else None
        found["plans"] = [a.plan.to_dict() for a in plans_for_latency(
            prunable, cfg, [f * macs for f in (0.7, 0.5, 0.3)], cost="macs", calibration=calibration,
            blocks=found["rises"] is not None)]
        found["plans"].append(prunable.uniform_plan(PruneConfig(**{**cfg.model_dump(), "ratio": 0.5,
                                                                  "global_pruning": True})).to_dict())

    original_score = tries.score
    tries.score = scored

    peaks: dict[str, dict[int, float]] = defaultdict(dict)
    stop = threading.Event()
    poller = threading.Thread(target=_poll_workers, args=(peaks, stop), daemon=True)
    poller.start()
    started = time.perf_counter()
    cfg = RunConfig.model_validate({**config, "distributed": {"processes": processes}})
    data = load_data(cfg.data, cfg.input_shape)
    task = cfg.task_model()
    torch.manual_seed(cfg.seed)
    fresh = load_source(cfg.model).module
    start = time.perf_counter()
    train(Trainee(fresh, (cfg.model, [])), None, data.train, data.val, cfg.teacher_training, job_dir=work / "job",
          processes=Processes.of_run(cfg, "float32", False), loading=data.loading.for_task(task), task=task)
    seconds["teacher training"] += time.perf_counter() - start
    run = {key: value for key, value in config.items() if key != "teacher_training"}
    (work / "run.json").write_text(json.dumps({**run, "model": str(teacher)}))
    start = time.perf_counter()
    code = main(["run", str(work / "run.json"), "--out", str(work / "run"), "--nproc-per-node", str(processes)])
    seconds["total"] = time.perf_counter() - started
    seconds["other"] = time.perf_counter() - start - sum(seconds[p] for p in PHASES[1:5])
    stop.set()
    poller.join()
    return {"exit": code, "seconds": dict(seconds), "rss_mb": {"run": _peak_rss_mb("self"),
            **{kind: max(p.values()) for kind, p in peaks.items() if p}}, **found}


def largest_difference(first: dict, other: dict) -> float:
    """The largest relative difference of ``other``'s scores and rises from ``first``'s."""
    pairs = [(np.array(first["scores"][k]), np.array(other["scores"][k])) for k in first["scores"]]
    if first["rises"] is not None:
        pairs.append((np.array(first["rises"]), np.array(other["rises"])))
    return max(float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1e-12))) for a, b in pairs)


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} [{min(values):.1f} .. {max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="a torchvision classifier (resnet50, resnet18, ...) or 'detection'")
    parser.add_argument("--size", type=int, default=224, help="input height and width (a classifier's)")
    parser.add_argument("--images", type=int, default=256, help="training images (a classifier's; validation: a quarter)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="of the teacher's training and of the distillation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one repeat, its JSON here
    args = parser.parse_args()
    if args.child:
        job = json.loads((args.child / "job.json").read_text())
        result = child(job["config"], Path(job["teacher"]), job["processes"], args.child)
        (args.child / "result.json").write_text(json.dumps(result))
        return 0

    start_load = load()
    with tempfile.TemporaryDirectory(prefix="spiral-scale-") as tmp:
        work = Path(tmp)
        config = base_config(args, work)
        teacher = teacher_checkpoint(config, work)
        results: dict[int, list[dict]] = defaultdict(list)
        for repeat in range(args.repeats):
            for processes in args.processes if repeat % 2 == 0 else args.processes[::-1]:
                folder = work / f"r{repeat}-p{processes}"
                folder.mkdir()
                (folder / "job.json").write_text(json.dumps({"config": config, "teacher": str(teacher),
                                                             "processes": processes}))
                subprocess.run([sys.executable, __file__, "--child", str(folder)], check=True, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=(folder / "stderr.txt").open("w"))
                results[processes].append(json.loads((folder / "result.json").read_text()))
                print(f"repeat {repeat + 1}/{args.repeats}, {processes} processes: exit "
                      f"{results[processes][-1]['exit']}, {results[processes][-1]['seconds']['total']:.0f} s", flush=True)
    what = "detection case" if args.model == "detection" else f"{args.model} at {args.size}x{args.size}, {args.images} images"
    print(f"\none step of {what}, batch {args.batch}, {args.epochs} epoch(s), {args.repeats} repeat(s); seconds, "
          f"median [min .. max]; {os.cpu_count()} CPUs, torch {torch.__version__}")
    counts = sorted(results)
    print(f"{'phase':<17}" + "".join(f"{f'{n} process' + ('es' if n > 1 else ''):>28}" for n in counts)
          + "".join(f"{f'{counts[0]}/{n}':>8}" for n in counts[1:]))
    for phase in PHASES:
        row = {n: [r["seconds"].get(phase, 0.0) for r in results[n]] for n in counts}
        ratios = "".join(
            f"{statistics.median(row[counts[0]]) / statistics.median(row[n]):8.2f}" if statistics.median(row[n]) > 0
            else f"{'-':>8}" for n in counts[1:]
        )
        print(f"{phase:<17}" + "".join(f"{cell(row[n]):>28}" for n in counts) + ratios)
    for n in counts:
        kinds = sorted({kind for r in results[n] for kind in r["rss_mb"]})
        peaks = ", ".join(f"{kind} {max(r['rss_mb'].get(kind) or 0 for r in results[n]):.0f} MB" for kind in kinds)
        print(f"peak RSS per process at {n}: {peaks}")
    print("exit codes (a try the judge does not accept trains nothing: distillation 0): "
          + "; ".join(f"{n} process{'es' if n > 1 else ''} {[r['exit'] for r in results[n]]}" for n in counts))
    first = results[counts[0]][0]
    others = [r for n in counts for r in results[n]]
    print(f"scores and rises, largest relative difference from the first run's: "
          f"{max(largest_difference(first, r) for r in others):.2e}; plans decided without measuring identical: "
          f"{'yes' if all(r['plans'] == first['plans'] for r in others) else 'NO'}")
    print(f"load average (1, 5, 15 min) at start: {start_load}; at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
