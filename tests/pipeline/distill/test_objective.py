import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.config import DistillConfig, LossWeights
from spiralprune.pipeline.distill.losses import logits_kd_loss
from spiralprune.pipeline.distill.objective import build_objective
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

WEIGHTS = {
    "logits": LossWeights(logits=1.0),
    "logits+feature": LossWeights(logits=1.0, feature=2.0),
    "logits+feature+contrastive": LossWeights(logits=1.0, feature=1.0, contrastive=0.5),
    "feature only": LossWeights(ce=0.0, logits=0.0, feature=1.0),
}


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return digits_resnet(width=4, blocks=(1, 1, 1, 1)), digits_resnet(width=8, blocks=(1, 1, 1, 1))


@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
def test_loss_is_the_weighted_sum_of_the_enabled_parts(weights: LossWeights) -> None:
    student, teacher = _pair()
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    objective, teacher_runner = build_objective(student, teacher, DistillConfig(weights=weights), images)

    total, parts = objective(images, labels, teacher_runner(images))
    logits = student(images)  # what the objective's forward computed (train mode: the batch's statistics)

    enabled = {name for name in ("ce", "logits", "feature", "contrastive") if getattr(weights, name) > 0}
    assert set(parts) == enabled
    assert total.item() == pytest.approx(sum(getattr(weights, n) * parts[n].item() for n in parts), rel=1e-5)
    if "logits" in parts:
        expected = logits_kd_loss(logits, teacher.eval()(images), 4.0)
        assert parts["logits"].item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    extras = [*objective.adapters.parameters(), *objective.heads.parameters()]
    # a weight and bias per head, a 1x1 conv per stage (three at 8x8: the 1x1 stage is excluded)
    assert len(extras) == 4 * ("contrastive" in parts) + 3 * ("feature" in parts)
    assert all(p.grad is not None for p in extras)
    if "logits" in parts:
        assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_without_a_teacher_the_loss_is_cross_entropy() -> None:
    student, _ = _pair()
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    objective, teacher_runner = build_objective(student, None, DistillConfig(weights=LossWeights(feature=1.0)), images)
    total, parts = objective(images, labels, None)
    logits = student(images)
    assert teacher_runner is None and list(parts) == ["ce"] and len(list(objective.parameters())) == len(
        list(student.parameters())
    )
    assert total.item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_explicit_feature_pairs_are_used() -> None:
    student, teacher = _pair()
    cfg = DistillConfig(weights=LossWeights(feature=1.0), feature_pairs=[("layer2.0.conv1", "layer2")])
    objective, _ = build_objective(student, teacher, cfg, torch.randn(2, 1, 8, 8))
    assert objective.pairs == [("layer2.0.conv1", "layer2")]
    assert isinstance(objective.adapters[0], nn.Conv2d) and objective.adapters[0].in_channels == 8


def test_contrastive_needs_a_linear_classifier() -> None:
    student, _ = _pair()
    teacher = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    cfg = DistillConfig(weights=LossWeights(contrastive=1.0))
    with pytest.raises(InputError, match="nn.Linear"):
        build_objective(student, teacher, cfg, torch.randn(2, 1, 8, 8))


def test_all_zero_weights_are_rejected_by_the_config() -> None:
    with pytest.raises(ValidationError, match="all loss weights are 0"):
        DistillConfig(weights={"ce": 0, "logits": 0})


def test_a_teacher_no_loss_weighs_is_not_run_and_the_loss_is_cross_entropy() -> None:
    student, teacher = _pair()
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    objective, teacher_runner = build_objective(student, teacher, DistillConfig(), images)
    assert teacher_runner is None
    total, parts = objective(images, labels, None)
    logits = student(images)
    assert set(parts) == {"ce"}
    assert total.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
