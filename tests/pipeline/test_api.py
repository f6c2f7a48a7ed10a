"""``spiralprune.shrink``, ``export``, ``profile``, ``compare`` and ``load`` on objects a Python user holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_spiral import tiny_config
from torch import nn
from torch.utils.data import DataLoader

import spiralprune
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.pipeline.data import digits_datasets
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

FAST = ProfileSettings(warmup_s=0.05, block_s=0.005, min_rounds=6, min_duration_s=0.05, max_duration_s=0.5)
EXAMPLE = torch.zeros(1, 1, 16, 16)


class Net(nn.Module):
    """A user's own class: no spec, no factory spiral could import."""

    def __init__(self) -> None:
        super().__init__()
        self.body = digits_resnet(width=8, blocks=(1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_the_version_is_the_packages() -> None:
    from importlib.metadata import version

    assert spiralprune.__version__ == version("spiralprune")


def test_shrink_takes_a_module_and_dataloaders_and_its_result_reloads_from_the_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    train, val = digits_datasets(size=16)
    settings = {key: tiny_config()[key] for key in ("schedule", "prune")}
    result = spiralprune.shrink(
        model, DataLoader(train, batch_size=32), DataLoader(val, batch_size=32), EXAMPLE, out=tmp_path / "run",
        target=tiny_config()["target"], budget=tiny_config()["budget"], distill={"epochs": 1}, **settings,
    )
    assert result.met_budget and result.onnx == tmp_path / "run" / "model.onnx" and result.onnx.is_file()
    assert [step.accepted for step in result.steps] == [True]
    pruned = result.model
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    reloaded = spiralprune.load(tmp_path / "run", base=Net())
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), reloaded.state_dict().values()))
    with pytest.raises(spiralprune.InputError, match="was given to spiral in Python"):
        spiralprune.load(tmp_path / "run")  # the architecture is the user's class: it needs the module


def test_shrink_refuses_what_is_not_data(tmp_path: Path) -> None:
    train, _ = digits_datasets(size=16)
    with pytest.raises(spiralprune.InputError, match="spiralprune.shrink: validation data is list"):
        spiralprune.shrink(Net(), train, [1, 2], EXAMPLE, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_export_profile_and_compare_take_modules(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    exported = spiralprune.export(model, tmp_path / "m.onnx", example_input=EXAMPLE)
    assert exported.parity.passed and exported.onnx.is_file() and exported.input_shape == [1, 1, 16, 16]
    profile = spiralprune.profile(model, example_input=EXAMPLE, target={"backend": "ort-cpu", "threads": 1}, settings=FAST)
    assert profile.measurements[0].samples_ms
    comparison = spiralprune.compare(tmp_path / "m.onnx", model, example_input=EXAMPLE,
                                target={"backend": "ort-cpu", "threads": 1}, settings=FAST)
    assert comparison.verdict in ("regression", "no regression", "improvement", "inconclusive")


def test_a_module_needs_its_example_input(tmp_path: Path) -> None:
    with pytest.raises(spiralprune.InputError, match="a module needs an example input"):
        spiralprune.export(Net(), tmp_path / "m.onnx")
