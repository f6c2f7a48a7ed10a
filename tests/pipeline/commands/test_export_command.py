"""``spiralprune export``: specs, checkpoints and run folders to the ONNX file a user ships."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from architectures import ARCHITECTURES, HEAVY

from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.models import build_model

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"


def batch_dim(path: Path):
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param or dim.dim_value


def test_a_spec_exports_with_a_dynamic_batch_and_prints_parity(tmp_path: Path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", SPEC, "--input-shape", "1,1,16,16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"to {out} (opset 17, dynamic batch, input [1, 16, 16])" in printed and ": passed" in printed
    assert batch_dim(out) == "batch"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((5, 1, 16, 16), np.float32)})[0].shape == (5, 10)


def test_an_output_s_own_tolerance_replaces_atol_for_it(tmp_path: Path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", SPEC, "--input-shape", "1,1,16,16", "--out", str(out), "--atol", "0",
                 "--output-atol", "output=1e-2"]) == 0
    assert "(tolerance 1.00e-02" in capsys.readouterr().out


def test_a_checkpoint_exports_at_its_recorded_shape_with_a_fixed_batch_and_opset(tmp_path: Path, capsys):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", base_spec=SPEC, plans=[], model=build_model(SPEC), input_shape=[4, 1, 16, 16])
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "ckpt"), "--out", str(out), "--fixed-batch", "--opset", "13"]) == 0
    assert "batch fixed at 4" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert batch_dim(out) == 4 and model.opset_import[0].version == 13


def test_a_run_folder_exports_its_last_accepted_step(write_config, tmp_path: Path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(write_config()), "--out", str(run)]) == 0
    step = next(json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines())
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert f"exported {run / step['dir'] / 'model'}" in capsys.readouterr().out
    params = lambda p: sum(int(np.prod(i.dims)) for i in onnx.load(str(p)).graph.initializer)  # noqa: E731
    assert params(out) == params(run / step["dir"] / "model.onnx")


@pytest.mark.parametrize("name", sorted(set(ARCHITECTURES) - HEAVY))
def test_every_architecture_spiral_prune_supports_exports_with_parity(name: str, tmp_path: Path, capsys):
    arch = ARCHITECTURES[name]
    out = tmp_path / "m.onnx"
    shape = ",".join(map(str, arch.input_shape))
    assert main(["export", arch.spec, "--input-shape", shape, "--input-dtype", arch.input_dtype, "--out", str(out)]) == 0
    assert ": passed" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    batch = arch.example(batch=3).numpy()
    assert session.run(None, {"input": batch})[0].shape == (3, arch.num_classes)


@pytest.mark.parametrize(("args", "message"), [
    ([SPEC], "has no recorded input shape: pass --input-shape"),
    ([SPEC, "--input-shape", "1,3,16,16"], "does not accept float32 input of shape [1, 3, 16, 16]"),
    ([SPEC, "--input-shape", "1,1,16,16", "--input-dtype", "int64"], "does not accept int64 input of shape"),
    ([SPEC, "--input-shape", "1,1,16,16", "--opset", "9"], "--opset 9 is outside 13..17"),
    ([SPEC, "--input-shape", "1,1,16,16", "--output-atol", "output"], "--output-atol 'output' is not NAME=TOLERANCE"),
    ([SPEC, "--input-shape", "1,1,16,16", "--output-atol", "logits=1e-2"],
     "parity.outputs names 'logits', not an output of the model (its outputs: output)"),
])
def test_bad_input_is_one_line_and_nothing_written(args, message, tmp_path: Path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()
