"""The plain VGG-style net: its shapes, no residual block to remove, and channels Torch-Pruning can cut."""

from __future__ import annotations

import pytest
import torch

from spiralprune.pipeline.prune import PrunableModel, PruneConfig, apply_plan
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.zoo.plain_net import plain_net


def test_a_spec_builds_it_and_it_classifies_small_images() -> None:
    model = load_source("spiralprune.pipeline.zoo.plain_net:plain_net?width=8&convs=[1,2]&in_channels=1").module.eval()
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 3


def test_it_has_no_residual_block_and_its_channels_prune() -> None:
    torch.manual_seed(0)
    model = plain_net(width=8, convs=(2, 2)).eval()
    x = torch.randn(1, 1, 16, 16)
    prunable = PrunableModel(model, x)
    assert prunable.blocks == []
    pruned = apply_plan(model, prunable.uniform_plan(PruneConfig(criterion="l1", ratio=0.5)), x)
    assert pruned(x).shape == (1, 10)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in plain_net(width=8, convs=(2, 2)).parameters())


def test_an_empty_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one convolution"):
        plain_net(convs=(2, 0))
