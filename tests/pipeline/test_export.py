from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch.utils.data import TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import ParityBudget
from spiralprune.pipeline.evaluate import evaluate_model, evaluate_onnx
from spiralprune.pipeline.export import check_parity, export_onnx
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.tasks import TaskConfig, build_task

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    path = export_onnx(model, torch.zeros(1, 1, 16, 16), tmp_path_factory.mktemp("x") / "model.onnx")
    return model, path


def test_export_has_dynamic_batch_and_parity(model_and_onnx):
    model, path = model_and_onnx
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    result = check_parity(model, path, torch.randn(40, 1, 16, 16), ParityBudget(atol=1e-3, min_top1_agreement=0.99))
    assert result.passed
    assert result.max_abs_diff < 1e-4
    assert result.top1_agreement == 1.0
    assert result.samples == 40


def test_a_graph_with_a_fixed_batch_is_compared_and_evaluated_on_every_sample(model_and_onnx, tmp_path: Path):
    """A file exported for TensorRT at batch 4: parity and evaluation alike run batches of 4 and fill the
    last one with copies whose outputs they drop, so every sample counts once (10 = 4 + 4 + 2 filled)."""
    model, _ = model_and_onnx
    fixed = export_onnx(model, torch.zeros(4, 1, 16, 16), tmp_path / "fixed.onnx", dynamic_batch=False)
    inputs = torch.randn(10, 1, 16, 16)
    inputs[8:] *= 100  # the two in the filled batch give the largest outputs: the scale parity reports is theirs
    with torch.no_grad():
        largest = float(model(inputs[8:]).abs().max())
        assert largest > float(model(inputs[:8]).abs().max())
    result = check_parity(model, fixed, inputs, ParityBudget())
    assert result.passed and result.samples == 10 and result.output_scale == pytest.approx(largest)
    assert check_parity(model, fixed, inputs[:2], ParityBudget()).samples == 2  # one batch, filled
    task = build_task(TaskConfig(), 10)
    data = TensorDataset(inputs, torch.randint(0, 10, (10,)))
    assert evaluate_onnx(fixed, data, task) == evaluate_model(model, data, task)


def test_parity_catches_a_broken_export(model_and_onnx, tmp_path: Path):
    """Corrupt one weight of the exported graph, as a faulty exporter or optimizer pass would."""
    model, path = model_and_onnx
    proto = onnx.load(str(path))
    initializer = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weights = numpy_helper.to_array(initializer).copy()
    weights.flat[: weights.size // 4] *= -1.0
    initializer.CopyFrom(numpy_helper.from_array(weights, initializer.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    result = check_parity(model, broken, torch.randn(40, 1, 16, 16), ParityBudget(atol=1e-3, min_top1_agreement=0.99))
    assert not result.passed
    assert result.max_abs_diff > 1e-3


def test_export_failure_is_one_line_and_leaves_nothing(tmp_path: Path):
    class Unexportable(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x).S  # no ONNX operator for SVD

    with pytest.raises(InputError, match="ONNX export failed"):
        export_onnx(Unexportable(), torch.zeros(1, 3, 3), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_onnx_is_an_input_error(model_and_onnx, tmp_path: Path):
    model, _ = model_and_onnx
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx file")
    with pytest.raises(InputError, match="corrupt.onnx"):
        check_parity(model, corrupt, torch.randn(4, 1, 16, 16), ParityBudget(atol=1e-3, min_top1_agreement=0.99))


def test_parity_tolerance_scales_with_outputs_above_one(model_and_onnx, tmp_path: Path):
    """Logits in the thousands differ in float32 rounding only; the tolerance follows their magnitude."""
    model, _ = model_and_onnx
    loud = torch.nn.Sequential(model, torch.nn.Linear(10, 10))
    with torch.no_grad():
        loud[1].weight.mul_(1e5)
    path = export_onnx(loud, torch.zeros(1, 1, 16, 16), tmp_path / "loud.onnx")
    result = check_parity(loud, path, torch.randn(40, 1, 16, 16), ParityBudget(atol=1e-3, min_top1_agreement=0.99))
    assert result.output_scale > 1e3 and result.tolerance == pytest.approx(1e-3 * result.output_scale)
    assert result.passed and result.to_dict()["tolerance"] == result.tolerance


class TwoHeads(torch.nn.Module):
    """Class logits and box regressions, as a detector's head returns them (a dict: named ONNX outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.logits, self.boxes = torch.nn.Linear(4, 3), torch.nn.Linear(4, 4)

    def forward(self, x):
        feature = self.body(x).mean((2, 3))
        return {"logits": self.logits(feature), "boxes": self.boxes(feature)}


def test_each_output_is_judged_against_its_own_tolerance(tmp_path: Path):
    """``parity.outputs``: an output named there has its own tolerance (boxes off by 2e-3 in the graph,
    as a looser decode would leave them); the others keep ``atol``; the check names the worst output."""
    from spiralprune.pipeline.acceptance import Evidence, Parity

    torch.manual_seed(0)
    model = TwoHeads().eval()
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "two.onnx", simplify=False)
    proto = onnx.load(str(path))
    bias = next(t for t in proto.graph.initializer if t.name == "boxes.bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(2e-3), bias.name))
    onnx.save(proto, str(path))
    inputs = torch.randn(16, 1, 8, 8) * 0.1

    strict = check_parity(model, path, inputs, ParityBudget(atol=1e-3, min_top1_agreement=0.0))
    assert not strict.passed and strict.worst == "boxes" and strict.max_abs_diff == pytest.approx(2e-3, rel=1e-2)
    assert strict.outputs["logits"]["max_abs_diff"] < 1e-5
    loose = check_parity(model, path, inputs, ParityBudget(atol=1e-3, outputs={"boxes": 5e-3}, min_top1_agreement=0.0))
    assert loose.passed and loose.tolerance == pytest.approx(5e-3 * max(1.0, loose.output_scale))
    check = Parity().checks(Evidence(parity=strict))[0]
    assert check.status == "fail" and "of 'boxes'" in check.message
    # The gate's own limits judge the same evidence: boxes within theirs, the logits within atol.
    check = Parity(ParityBudget(outputs={"boxes": 5e-3}, min_top1_agreement=0.0)).checks(Evidence(parity=strict))[0]
    assert check.status == "pass"
    with pytest.raises(InputError, match=r"parity.outputs names 'box', not an output of the model \(its outputs: logits, boxes\)"):
        check_parity(model, path, inputs, ParityBudget(outputs={"box": 1.0}))
