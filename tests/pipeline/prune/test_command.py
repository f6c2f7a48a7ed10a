"""``spiralprune prune``: prints parameters, MACs and every pruned layer, and writes a loadable checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from architectures import DEMO_SPEC

from spiralprune.pipeline.checkpoint import load_checkpoint
from spiralprune.pipeline.cli import main


def test_prune_prints_the_counts_and_writes_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pruned"
    args = ["prune", DEMO_SPEC, "--input-shape", "1,1,32,32", "--ratio", "0.5", "--round-to", "8", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "MACs" in printed
    assert "layer1.0.conv1" in printed and "16" in printed and "8" in printed
    model, meta = load_checkpoint(out)
    assert model.layer1[0].conv1.out_channels == 8 and len(meta["plans"]) == 1
    # A checkpoint is a model spec too: pruning it again appends a plan.
    again_args = ["prune", str(out), "--input-shape", "1,1,32,32", "--ratio", "0.5", "--out", str(tmp_path / "again")]
    assert main(again_args) == 0
    again, meta = load_checkpoint(tmp_path / "again")
    assert len(meta["plans"]) == 2 and again.layer1[0].conv1.out_channels == 4
    with torch.no_grad():
        assert again(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_the_default_criterion_runs_without_the_nni_extra(tmp_path: Path) -> None:
    """NNI is an optional extra: ``spiralprune prune`` with its defaults runs in a process where ``nni`` cannot be
    imported (an NNI criterion there is one line naming the extra: ``tests/pipeline/test_cli.py``)."""
    blocked = ("import sys; sys.modules['nni'] = None; from spiralprune.pipeline.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", blocked, "prune", DEMO_SPEC, "--input-shape", "1,1,32,32", "--out",
                           str(tmp_path / "p")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(tmp_path / "p")[1]["plans"][0].criterion == "tp-magnitude"


@pytest.mark.slow
def test_taylor_uses_calibration_data(tmp_path: Path) -> None:
    args = ["prune", DEMO_SPEC, "--input-shape", "1,1,32,32", "--criterion", "tp-taylor", "--data", "digits",
            "--out", str(tmp_path / "t")]
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "t")[1]["plans"][0].criterion == "tp-taylor"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-shape", "1,one,32"], "not a comma-separated list"),
        (["--input-shape", "1,3,32,32"], "does not accept float32 input of shape"),
        (["--input-shape", "1,1,32,32", "--ratio", "1.5"], "between 0 and 1"),
        (["--input-shape", "1,1,32,32", "--criterion", "taylor"], "need calibration data: pass --data"),
        (["--input-shape", "1,1,32,32", "--ignore", "layer9"], "'layer9' matches no layer"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert main(["prune", DEMO_SPEC, *extra, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
