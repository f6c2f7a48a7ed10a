"""What spiral writes gets the mode the process umask gives, as ``open`` and ``mkdir`` do (not tempfile's 0600)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

# Runs under real umasks in a fresh process (one process for all of them: torch's import is most of its time):
# every way spiral writes an output file or folder, into one folder per umask.
WRITER = """
import os, sys, tempfile
from pathlib import Path
import torch
from spiralprune.core.atomic import publish_dir, write_json, write_text
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.models import build_model

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"
for mask in sys.argv[2:]:
    os.umask(int(mask, 8))
    out = Path(sys.argv[1]) / mask
    write_text(out / "new" / "report.md", "# report\\n")
    write_json(out / "profile.json", {"p50": 1.0})
    work = Path(tempfile.mkdtemp(dir=out, prefix=".step."))
    write_text(work / "eval.json", "{}")
    publish_dir(work, out / "step")
    export_onnx(torch.nn.Linear(3, 2), torch.zeros(1, 3), out / "model.onnx", simplify=False)
    save_checkpoint(out / "checkpoint", base_spec=SPEC, plans=[], model=build_model(SPEC),
                    input_shape=[1, 1, 8, 8])
"""
MASKS = (0o022, 0o077, 0o002)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))}


def test_outputs_follow_the_process_umask(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), *(f"{mask:o}" for mask in MASKS)], check=True,
                   env=env, cwd=ROOT)
    for mask in MASKS:
        files, folders = 0o666 & ~mask, 0o777 & ~mask
        assert modes(tmp_path / f"{mask:o}") == {
            "model.onnx": files, "new": folders, "new/report.md": files, "profile.json": files,
            "step": folders, "step/eval.json": files,
            "checkpoint": folders, "checkpoint/model.safetensors": files, "checkpoint/spiral.json": files,
        }, oct(mask)
        assert json.loads((tmp_path / f"{mask:o}" / "profile.json").read_text()) == {"p50": 1.0}


def test_reading_the_umask_leaves_it_as_it_was():
    from spiralprune.core.atomic import umask

    before = os.umask(0o027)
    try:
        assert umask() == 0o027
        assert umask() == 0o027
    finally:
        os.umask(before)
