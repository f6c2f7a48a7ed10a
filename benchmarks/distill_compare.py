"""What distillation buys a pruned student: KD vs cross-entropy-only fine-tuning, and each KD loss.

The demo's setting (``pipeline/configs/demo.yaml``: scikit-learn digits at 32x32, its ResNet, its
teacher training) gives the teacher; the demo's pruning settings remove 50 % of its channels once;
every variant then fine-tunes a copy of that same pruned student with the demo's distillation
settings (same epochs, optimizer, schedule), for several seeds:

- cross-entropy only (no teacher),
- logits (Hinton KD: CE + KL·T²),
- logits + feature (FitNets hints on every stage, 1x1 adapters),
- logits + feature + contrastive (InfoNCE on the penultimate embedding, projection heads).

Prints a Markdown table (validation accuracy, mean ± sample standard deviation over seeds) and
writes every number to ``--json``.

    .venv/bin/python benchmarks/distill_compare.py [--seeds 3] [--device cuda] [--json results.json]
        [--config pipeline/configs/demo.yaml] [--criterion l1]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from spiralprune.pipeline.config import load_config
from spiralprune.pipeline.data import load_datasets
from spiralprune.pipeline.distill.config import DistillConfig, LossWeights
from spiralprune.pipeline.distill.train import distill, recalibrate_batchnorm
from spiralprune.pipeline.evaluate import evaluate_model
from spiralprune.pipeline.tasks import build_task
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.prune import example_input, prune

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "demo.yaml"
RATIO = 0.5
VARIANTS: dict[str, LossWeights | None] = {
    "cross-entropy only (no KD)": None,
    "logits (Hinton KD)": LossWeights(ce=1.0, logits=1.0),
    "logits + feature": LossWeights(ce=1.0, logits=1.0, feature=1.0),
    "logits + feature + contrastive": LossWeights(ce=1.0, logits=1.0, feature=1.0, contrastive=1.0),
}


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fine_tune_all(
    pruned: nn.Module, teacher: nn.Module, data: tuple, cfg: DistillConfig, seeds: int, device: str
) -> dict[str, list[dict]]:
    """Every variant, every seed, each from a fresh copy of the same pruned student."""
    runs: dict[str, list[dict]] = {}
    for name, weights in VARIANTS.items():
        runs[name] = []
        for seed in range(seeds):
            update = {"seed": seed} | ({"weights": weights} if weights is not None else {})
            student = copy.deepcopy(pruned)
            started = time.perf_counter()
            kd_teacher = teacher if weights is not None else None
            result = distill(student, kd_teacher, *data, cfg.model_copy(update=update), device=device)
            seconds = time.perf_counter() - started
            runs[name].append(
                {"seed": seed, "val_accuracy": result.best_val_quality, "epochs_run": result.epochs_run,
                 "seconds": seconds, "history": result.history}
            )  # fmt: skip
            print(f"{name}, seed {seed}: {result.best_val_quality:.4f} ({seconds:.1f} s)", flush=True)
    return runs


def print_table(runs: dict[str, list[dict]]) -> None:
    print("| fine-tuning of the pruned student | val accuracy (mean ± std) | per seed | vs CE only |")
    print("|---|---|---|---|")
    baseline = statistics.mean(r["val_accuracy"] for r in runs[next(iter(VARIANTS))])
    for name, results in runs.items():
        accuracies = [r["val_accuracy"] for r in results]
        mean = statistics.mean(accuracies)
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        per_seed = ", ".join(f"{a:.2%}" for a in accuracies)
        print(f"| {name} | {mean:.2%} ± {std:.2%} | {per_seed} | {100 * (mean - baseline):+.2f} pt |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="a spiralprune run config (default: the demo's)")
    parser.add_argument("--criterion", default=None, help="pruning criterion instead of the config's")
    args = parser.parse_args()

    cfg = load_config(args.config)
    prune_cfg = cfg.prune.model_copy(update={"ratio": RATIO, "criterion": args.criterion or cfg.prune.criterion})
    train_set, val_set = load_datasets(cfg.data.source, cfg.input_shape, seed=cfg.data.seed)
    torch.manual_seed(cfg.seed)
    teacher = build_model(cfg.model)
    started = time.perf_counter()
    teacher_cfg = cfg.teacher_training or DistillConfig()
    teacher_result = distill(teacher, None, train_set, val_set, teacher_cfg, device=args.device)
    teacher_seconds = time.perf_counter() - started
    teacher_accuracy = evaluate_model(teacher.cpu(), val_set, build_task())["accuracy"]

    calibration = [batch for _, batch in zip(range(4), DataLoader(train_set, batch_size=cfg.data.batch_size))]
    pruned, plan = prune(copy.deepcopy(teacher), example_input(cfg.input_shape), prune_cfg, calibration=calibration)
    pruned_accuracy = evaluate_model(pruned, val_set, build_task())["accuracy"]
    recalibrated = copy.deepcopy(pruned)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(train_set, batch_size=cfg.distill.batch_size, shuffle=True, generator=generator)
    recalibrate_batchnorm(recalibrated, loader, cfg.distill.bn_recalibration_batches, build_task())
    recalibrated_accuracy = evaluate_model(recalibrated, val_set, build_task())["accuracy"]

    runs = fine_tune_all(pruned, teacher, (train_set, val_set), cfg.distill, args.seeds, args.device)

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\nModel `{cfg.model}` at {cfg.input_shape}; teacher {parameters(teacher):,} parameters, val accuracy "
          f"{teacher_accuracy:.2%} ({teacher_result.epochs_run} epochs, {teacher_seconds:.0f} s).")
    print(f"Pruned once: {RATIO:.0%} of the channels by `{prune_cfg.criterion}` (round_to {prune_cfg.round_to}), "
          f"{parameters(pruned):,} parameters; val accuracy {pruned_accuracy:.2%} as pruned, "
          f"{recalibrated_accuracy:.2%} after batch-norm recalibration.")
    print(f"Fine-tuning: {cfg.distill.epochs} epochs, {cfg.distill.optimizer} lr {cfg.distill.lr}, "
          f"T={cfg.distill.temperature}, {args.seeds} seeds, on {device_name} (torch {torch.__version__}).\n")
    print_table(runs)

    if args.json is not None:
        summary = {
            "device": device_name,
            "torch": torch.__version__,
            "model": cfg.model,
            "input_shape": cfg.input_shape,
            "teacher": {"val_accuracy": teacher_accuracy, "parameters": parameters(teacher),
                        "epochs": teacher_result.epochs_run, "seconds": teacher_seconds},
            "pruned": {"ratio": RATIO, "criterion": prune_cfg.criterion, "parameters": parameters(pruned),
                       "val_accuracy": pruned_accuracy, "val_accuracy_recalibrated": recalibrated_accuracy,
                       "plan": plan.to_dict()},
            "distill": cfg.distill.model_dump(mode="json"),
            "runs": runs,
        }  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
