"""Which coupled groups may shrink: outputs, stems, ignored layers, LayerNorm-coupled widths, attention heads."""

from __future__ import annotations

import copy

import pytest
import torch
from architectures import ARCHITECTURES, built
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune import PruneConfig, prune
from spiralprune.pipeline.prune.attention import split_attention
from spiralprune.pipeline.prune.graph import build_graph, prunable_groups, check_supported


def groups_of(name: str, **config: object) -> list:
    model = split_attention(copy.deepcopy(built(name)))
    return prunable_groups(build_graph(model, ARCHITECTURES[name].example()), model, PruneConfig(**config))


def all_members(groups: list) -> set[str]:
    return {member for c in groups for member in c.members}


def test_output_layer_is_never_a_member() -> None:
    assert "fc" not in all_members(groups_of("demo", protect_first_last=False))


def test_stem_is_protected_unless_asked() -> None:
    assert "stem.0" not in all_members(groups_of("demo"))
    assert "stem.0" in all_members(groups_of("demo", protect_first_last=False))


def test_residual_add_couples_the_stage_into_one_group() -> None:
    (stage,) = [c for c in groups_of("resnet18") if "layer2.0.downsample.0" in c.members]
    assert {"layer2.0.conv2", "layer2.1.conv2", "layer2.0.downsample.0"} <= set(stage.members)


def test_ignored_prefix_keeps_every_layer_under_it() -> None:
    members = all_members(groups_of("demo", ignored_layers=["layer3"]))
    assert members and not any(m.startswith("layer3.") for m in members)
    model = copy.deepcopy(built("demo"))
    before = {n: p.shape for n, p in model.named_parameters() if n.startswith("layer3.")}
    prune(model, ARCHITECTURES["demo"].example(), PruneConfig(ratio=0.5, ignored_layers=["layer3"]))
    assert {n: p.shape for n, p in model.named_parameters() if n.startswith("layer3.")} == before


@pytest.mark.parametrize("key", ["ignored_layers", "per_layer"])
def test_a_layer_name_that_matches_nothing_is_refused(key: str) -> None:
    value = ["layer9"] if key == "ignored_layers" else {"layer9": 0.5}
    with pytest.raises(InputError, match="'layer9' matches no layer of the model"):
        groups_of("demo", **{key: value})


@pytest.mark.parametrize("name", ["vit", "text_transformer"])
def test_transformers_offer_heads_and_mlp_width_but_not_the_residual_width(name: str) -> None:
    groups = groups_of(name, protect_first_last=False)
    heads = [c for c in groups if c.unit > 1]
    assert len(heads) == 2 and all(c.unit == c.channels // 4 for c in heads)  # 2 layers, 4 heads each
    assert len(groups) == 4  # plus the two MLPs
    assert not any("ln" in m or "norm" in m or "embedding" in m for m in all_members(groups))


def test_lstm_hidden_units_form_one_group() -> None:
    (group,) = groups_of("lstm")
    assert group.root == "lstm" and group.channels == 32


def test_unsupported_layers_are_named() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Bilinear(8, 8, 8))
    with pytest.raises(InputError, match=r"layer '1' \(Bilinear\) blocks pruning"):
        check_supported(model)


def test_tracing_restores_modes_and_grad_flags() -> None:
    model = copy.deepcopy(built("demo")).train()
    model.fc.requires_grad_(False)
    build_graph(model, torch.zeros(1, 1, 32, 32))
    assert model.training and not model.fc.weight.requires_grad and model.stem[0].weight.requires_grad
