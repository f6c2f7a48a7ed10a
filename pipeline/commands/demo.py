"""``spiralprune demo``: the embedded default on this machine's CPU with ONNX Runtime."""

from __future__ import annotations

import argparse
import shutil
from importlib import resources
from pathlib import Path

from spiralprune.core.errors import InputError
from spiralprune.pipeline.commands.run import execute

DEMO_CONFIG = resources.files("spiralprune.pipeline") / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory")


def run(args: argparse.Namespace) -> int:
    """Every demo is a fresh spiral; only the trained teacher checkpoint is kept between demos."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give the demo's run directory")
    if out.exists():
        for child in out.iterdir():
            if child.name == "teacher":
                for item in child.iterdir():
                    if item.name != "model":
                        shutil.rmtree(item) if item.is_dir() else item.unlink()
            else:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    with resources.as_file(DEMO_CONFIG) as config_path:
        return execute(config_path, out, resume=False)


def interrupted(args: argparse.Namespace) -> str:
    return (f"a trained teacher is kept in {args.out}/teacher/model; the next 'spiralprune demo' reuses it and runs "
            "a fresh spiral")
