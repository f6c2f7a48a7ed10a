"""Torch-Pruning criteria (``tp-magnitude``, ``tp-taylor``, ``tp-bn-scale``): its group importances.

They aggregate over every coupled slice of the group themselves and divide by the group's mean
(Torch-Pruning's default ``normalizer="mean"``). The registry is ``spiralprune.pipeline.prune.criteria``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spiralprune.pipeline.prune.group import Batch, PrunableGroup, loss_of


def tp_scorer(
    make_importance: Callable[[], Callable], *, gradients: bool
) -> Callable[[nn.Module, list[PrunableGroup], list[Batch]], list[Tensor | None]]:
    def score(model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        if gradients:
            _accumulate_gradients(model, calibration)
        importance = make_importance()
        with torch.no_grad():
            return [_as_scores(importance(group.group)) for group in groups]

    return score


def _as_scores(scores: Tensor | None) -> Tensor | None:
    return None if scores is None else scores.detach().float().cpu()


def _accumulate_gradients(model: nn.Module, calibration: list[Batch]) -> None:
    model.eval()
    model.zero_grad(set_to_none=False)
    with torch.enable_grad():
        loss = loss_of(calibration)
        for batch in calibration:
            loss(model, batch).backward()
    for param in model.parameters():  # layers the loss never reaches score zero
        if param.grad is None:
            param.grad = torch.zeros_like(param)


def tp_magnitude() -> Callable:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def tp_taylor() -> Callable:
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


def tp_bn_scale() -> Callable:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


# The scorers ``spiralprune.pipeline.prune.criteria.CRITERIA`` names.
magnitude = tp_scorer(tp_magnitude, gradients=False)
taylor = tp_scorer(tp_taylor, gradients=True)
bn_scale = tp_scorer(tp_bn_scale, gradients=False)
