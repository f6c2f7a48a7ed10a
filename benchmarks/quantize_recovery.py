"""What each INT8 remedy gives back when post-training quantization loses too much, on the quality benchmark's models.

MobileNetV2 on Fashion-MNIST (``benchmarks/quality_frontier.py``'s data and 30-epoch teacher, cached
under ``--cache``; trained here when absent) and, with ``--student``, spiral checkpoints of it (the
quality benchmark's pruned results). For each model and each weight scheme (per-channel, the
default, and per-tensor, which targets without per-channel INT8 need), through
``spiralprune.pipeline.passes.int8.model.int8_model`` exactly as ``spiralprune quantize`` and the run's stage call it:

- ``post-training``: ONNX Runtime's static QDQ INT8 alone (``recovery_epochs`` 0, ``max_float_nodes`` 0);
- ``fallback``: post-training, then the float fallback (``recovery_epochs`` 0);
- ``recovery``: post-training, then quantization-aware recovery, every operator INT8 (``max_float_nodes``
  0): the float model teaching a teacher, the teacher teaching a student, as in a run; one training per
  ``--seeds`` seed (the distillation seed);
- ``default``: the stage's defaults: the fallback, then recovery only if the fallback leaves the model
  more than ``max_drop`` below float (then the fallback again on the recovered model).

Accuracy is the INT8 ONNX model's on the validation split (mean ± std over seeds where training ran).
Each scheme's post-training, fallback and recovery (first seed) models are measured in rounds beside the
float model (``judge_quantized``): p50 and the median per-round speedup. Prints a Markdown table and
the load average, and writes every number to ``--json``.

    .venv/bin/python benchmarks/quantize_recovery.py [--student CHECKPOINT ...] [--seeds 0 1 2]
        [--cache runs/quality] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality_frontier import ARCHITECTURES, TEACHER_TRAINING, teacher_export, train_teacher  # noqa: E402

from spiralprune.core.atomic import write_json  # noqa: E402
from spiralprune.deploy.fingerprint import cpu_model  # noqa: E402
from spiralprune.deploy.profiler import MeasuringSession, Target  # noqa: E402
from spiralprune.deploy.sampling import ProfileSettings  # noqa: E402
from spiralprune.pipeline.casestudies.images import build_image_folder  # noqa: E402
from spiralprune.pipeline.checkpoint import load_checkpoint  # noqa: E402
from spiralprune.pipeline.data import load_datasets  # noqa: E402
from spiralprune.pipeline.distill.config import DistillConfig  # noqa: E402
from spiralprune.pipeline.export import export_onnx  # noqa: E402
from spiralprune.pipeline.passes.int8.config import QuantizeConfig  # noqa: E402
from spiralprune.pipeline.passes.int8.model import Trainable, int8_model, judge_quantized  # noqa: E402
from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8  # noqa: E402

ARCH = "mobilenet_v2"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def measure_model(name: str, model: torch.nn.Module, teacher: torch.nn.Module, train, val, args: argparse.Namespace,
                  work: Path, console: Console) -> list[dict]:
    shape = ARCHITECTURES[ARCH][1]
    example = torch.zeros(shape)
    float_onnx = export_onnx(model, example, work / name / "float.onnx")
    target = Target("ort-cpu", 1, args.threads)
    settings = ProfileSettings(max_duration_s=args.max_duration)
    rows = []
    for per_channel in (True, False):
        scheme = "per-channel" if per_channel else "per-tensor"
        row: dict = {"model": name, "weights": scheme}
        base = QuantizeConfig(per_channel=per_channel, recovery_epochs=args.recovery_epochs)
        made, paths = {}, {}
        runs = [("post-training", base.model_copy(update={"recovery_epochs": 0, "max_float_nodes": 0}), [None]),
                ("fallback", base.model_copy(update={"recovery_epochs": 0}), [None]),
                ("recovery", base.model_copy(update={"max_float_nodes": 0}), args.seeds),
                ("default", base, args.seeds)]
        for method, cfg, seeds in runs:
            row[method], row[f"{method}_s"], row[f"{method}_notes"] = [], [], []
            for seed in seeds:
                out = work / name / scheme / f"{method}-{seed}" / "model.onnx"
                trainable = None if seed is None else Trainable(model, teacher, example, DistillConfig(seed=seed))
                result = int8_model(float_onnx, out, train, val, 10, cfg, trainable)
                row[method].append(result.accuracy[INT8])
                if result.recovery is not None and "seconds" in result.recovery:
                    row[f"{method}_s"].append(result.recovery["seconds"])
                row[f"{method}_notes"].append("; ".join(result.reasons))
                console.print(f"{name} {scheme} {method} seed {seed}: {result.accuracy[INT8]:.2f}% {'; '.join(result.reasons)}")
                made.setdefault(method, result)
                paths.setdefault(method, out)
                if result.recovery is None:
                    break  # nothing was trained: every seed gives this model
        row["float"] = made["post-training"].accuracy[FLOAT]
        row["fallback_nodes"] = len(made["fallback"].fallback.nodes) if made["fallback"].fallback else 0
        for method in ("post-training", "fallback", "recovery"):
            with MeasuringSession(target, work / "compiled") as session:
                judged = judge_quantized(float_onnx, paths[method], session, settings, made[method], base).to_dict()
            row[f"{method}_p50_ms"] = judged["p50_ms"][INT8]
            row[f"{method}_speedup"] = judged["speedup"]
            row["float_p50_ms"] = judged["p50_ms"][FLOAT]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, nargs="*", default=[], help="spiral checkpoints of the teacher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recovery-epochs", type=int, default=QuantizeConfig().recovery_epochs)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=300)
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_TRAINING["epochs"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-duration", type=float, default=10.0, help="seconds of paired rounds per judgement")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    torch.set_num_threads(args.threads)
    data = build_image_folder(args.cache / "data", train_per_class=args.train_per_class, val_per_class=args.val_per_class)
    started, load_start = dt.datetime.now().isoformat(timespec="minutes"), os.getloadavg()
    teacher_dir = train_teacher(ARCH, data, args.cache, args, console)
    teacher_export(ARCH, data, teacher_dir, args.cache)
    train, val = load_datasets(str(data), ARCHITECTURES[ARCH][1])
    teacher, _ = load_checkpoint(teacher_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spiral-quantize-recovery-") as work:
        # the teacher is taught by itself (the float model, as `spiralprune quantize` does), a student by the teacher
        rows += measure_model("teacher", teacher, copy.deepcopy(teacher), train, val, args, Path(work), console)
        for index, path in enumerate(args.student):
            student, _ = load_checkpoint(path)
            rows += measure_model(f"student {index + 1}", student, teacher, train, val, args, Path(work), console)
    load_end = os.getloadavg()
    defaults = QuantizeConfig()
    print(f"MobileNetV2, Fashion-MNIST ({args.train_per_class} train / {args.val_per_class} val images per class), "
          f"{started}, {cpu_model()}, ONNX Runtime CPU {args.threads} threads, batch 1; load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end; recovery {args.recovery_epochs} epochs at lr "
          f"{defaults.recovery_lr:g}, seeds {args.seeds}\n")
    print("| model | weights | float % | post-training INT8 % | fallback % (nodes float) | recovery, all INT8 % "
          "| default stage % | recovery s | float p50 ms | INT8 p50 ms (speedup): post-training / fallback / recovery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        seconds = f"{statistics.mean(r['recovery_s']):.0f}" if r["recovery_s"] else "not run"
        latency = " / ".join(f"{r[f'{m}_p50_ms']:.3f} ({r[f'{m}_speedup']:.2f}×)" for m in ("post-training", "fallback", "recovery"))
        print(f"| {r['model']} | {r['weights']} | {r['float']:.2f} | {r['post-training'][0]:.2f} | {r['fallback'][0]:.2f} "
              f"({r['fallback_nodes']}) | {_mean_std(r['recovery'])} | {_mean_std(r['default'])} | {seconds} | "
              f"{r['float_p50_ms']:.3f} | {latency} |")
    if args.json is not None:
        write_json(args.json, {"date": started, "machine": cpu_model(), "load_start": load_start, "load_end": load_end,
                               "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
