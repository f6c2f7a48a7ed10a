"""Every registered criterion on resnet18 and on the demo model, and the registry's refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from architectures import ARCHITECTURES, built, output_tolerance
from pydantic import ValidationError
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune import CRITERIA, PruneConfig, apply_plan, plan_pruning, zero_removed
from spiralprune.pipeline.prune.criteria import get_criterion


@pytest.mark.parametrize("criterion", list(CRITERIA))
@pytest.mark.parametrize("arch_name", ["demo", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_criterion_plan_removes_exactly_what_it_names(arch_name: str, criterion: str) -> None:
    arch, model = ARCHITECTURES[arch_name], built(arch_name)
    example = arch.example()
    plan = plan_pruning(model, example, PruneConfig(criterion=criterion, ratio=0.5), calibration=arch.calibration())
    assert plan.criterion == criterion and plan.groups
    pruned = apply_plan(copy.deepcopy(model), plan, example)
    with torch.no_grad():
        reference = zero_removed(model, plan, example).eval()(example)
        torch.testing.assert_close(pruned(example), reference, rtol=1e-4, atol=output_tolerance(reference))


def test_criteria_choose_differently() -> None:
    arch, model = ARCHITECTURES["demo"], built("demo")
    calibration = arch.calibration()
    chosen = {
        name: plan_pruning(model, arch.example(), PruneConfig(criterion=name, ratio=0.5), calibration=calibration)
        for name in ("l1", "fpgm", "taylor", "tp-bn-scale")
    }
    removed = {name: [group.removed for group in plan.groups] for name, plan in chosen.items()}
    assert len({tuple(r) for r in removed.values()}) == len(removed)


@pytest.mark.parametrize(
    ("criterion", "pruner"), [("l1", "L1NormPruner"), ("l2", "L2NormPruner"), ("fpgm", "FPGMPruner")]
)
def test_nni_criterion_picks_the_channels_nni_masks(criterion: str, pruner: str) -> None:
    import nni.compression.pruning as nni_pruning

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 4),
    )
    plan = plan_pruning(model, torch.randn(1, 3, 16, 16), PruneConfig(criterion=criterion, ratio=0.5,
                                                                       protect_first_last=False))
    (group,) = [g for g in plan.groups if g.root == "0"]
    _, masks = getattr(nni_pruning, pruner)(copy.deepcopy(model), [{"op_names": ["0"], "sparse_ratio": 0.5}]).compress()
    masked = (masks["0"]["weight"].flatten(1).sum(1) == 0).nonzero().flatten().tolist()
    assert list(group.removed) == masked


def test_unknown_criterion_lists_the_valid_names() -> None:
    valid = "valid: l1, l2, fpgm, taylor, tp-magnitude, tp-taylor, tp-bn-scale, taylor-group, sensitivity"
    with pytest.raises(InputError, match=valid):
        get_criterion("l3")
    with pytest.raises(ValidationError, match="unknown pruning criterion 'l3'"):
        PruneConfig(criterion="l3")


@pytest.mark.parametrize("criterion", [name for name, c in CRITERIA.items() if c.needs_calibration])
def test_data_driven_criteria_need_calibration(criterion: str) -> None:
    arch = ARCHITECTURES["demo"]
    with pytest.raises(InputError, match="needs calibration data"):
        plan_pruning(arch.build(), arch.example(), PruneConfig(criterion=criterion))


def test_bn_scale_on_a_model_without_batchnorm_says_so() -> None:
    arch = ARCHITECTURES["lstm"]
    with pytest.raises(InputError, match="could not score any channel group"):
        plan_pruning(arch.build(), arch.example(), PruneConfig(criterion="tp-bn-scale"))
