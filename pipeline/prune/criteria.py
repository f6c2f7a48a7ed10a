"""Pruning criteria: one registry entry per criterion, each scoring every channel of every prunable group.

The scorers live with their kind: NNI criteria (``l1``, ``l2``, ``fpgm``, ``taylor``) in
``spiralprune.pipeline.prune.nni_criteria``, which takes the per-channel metrics NNI's pruners compute and
averages them over each group; Torch-Pruning criteria (``tp-*``) in ``spiralprune.pipeline.prune.tp_criteria``,
its group importances, which aggregate over the group themselves and divide by the group's mean
(Torch-Pruning's default ``normalizer="mean"``); ``taylor-group`` in ``spiralprune.pipeline.prune.taylor``;
``sensitivity`` in ``spiralprune.pipeline.prune.sensitivity``.

All of these scores are comparable within a group only: every layer's average channel scores 1.
``taylor-group`` is not normalised: it estimates the change of the loss when a channel is removed,
so its scores compare across layers (``Criterion.comparable_across_layers``). ``sensitivity``
measures that change instead, for removing a growing share of each group (one group at a time).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from spiralprune.pipeline.prune.group import Batch, PrunableGroup


@dataclass(frozen=True)
class Criterion:
    summary: str
    needs_calibration: bool
    # "module:name" under spiralprune.pipeline.prune: the scorer ``(model, groups, batches) -> scores``, imported
    # on first use, so that the registry (a command's --help, a run config's check) imports no torch.
    scorer: str
    # True: scores of different groups are on one scale (an estimated loss change), so an allocator
    # may compare them directly; False: each group's scores are relative (normalised per layer).
    comparable_across_layers: bool = False
    # True: its scorer splits its groups and batches across the processes of a process group, which a run
    # with ``distributed.processes`` above 1 scores in (``spiralprune.pipeline.scoring``); False: it scores
    # in the run's process.
    parallel: bool = False

    def score(self, model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        """One score per channel of each group (higher = more important); None = cannot be scored.

        ``model`` keeps its structure and weights; ``taylor`` and ``tp-taylor`` leave gradients on it. NNI
        wraps the layers of a copy, never of ``model``.
        """
        module, _, name = self.scorer.partition(":")
        scorer = getattr(importlib.import_module(f"spiralprune.pipeline.prune.{module}"), name)
        return scorer(model, groups, calibration)


CRITERIA: dict[str, Criterion] = {
    "l1": Criterion("NNI L1NormPruner: L1 norm of each output filter", False, "nni_criteria:l1"),
    "l2": Criterion("NNI L2NormPruner: L2 norm of each output filter", False, "nni_criteria:l2"),
    "fpgm": Criterion(
        "NNI FPGMPruner: distance of each filter to the others (geometric median)", False, "nni_criteria:fpgm"
    ),
    "taylor": Criterion(
        "NNI TaylorPruner: first-order Taylor estimate (weight x gradient)^2 on calibration batches",
        True,
        "nni_criteria:taylor",
    ),
    "tp-magnitude": Criterion(
        "Torch-Pruning GroupMagnitudeImportance: L2 norm over every coupled slice of the group",
        False,
        "tp_criteria:magnitude",
    ),
    "tp-taylor": Criterion(
        "Torch-Pruning GroupTaylorImportance: |weight x gradient| over the group on calibration batches",
        True,
        "tp_criteria:taylor",
    ),
    "tp-bn-scale": Criterion(
        "Torch-Pruning BNScaleImportance: |gamma| of the group's BatchNorm layers (groups without one are kept)",
        False,
        "tp_criteria:bn_scale",
    ),
    "taylor-group": Criterion(
        "Group first-order Taylor (Molchanov 2019, as in HALP): per calibration batch, (sum of weight x "
        "gradient over every coupled slice of a channel)^2, summed over batches; not normalised per layer",
        True,
        "taylor:taylor_group",
        comparable_across_layers=True,
        parallel=True,
    ),
    "sensitivity": Criterion(
        "Measured sensitivity: each group alone, its channels zeroed in taylor-group order, the rise of the "
        "calibration loss at 1/4, 1/2, 3/4, 7/8 and all of them (convex envelope), per channel; comparable "
        "across layers",
        True,
        "sensitivity:sensitivity",
        comparable_across_layers=True,
        parallel=True,
    ),
}


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise InputError(f"unknown pruning criterion '{name}'; valid: {', '.join(CRITERIA)}")
    return CRITERIA[name]


def calibration_batches(name: str, calibration: Sequence[Batch] | None) -> list[Batch]:
    """The calibration batches as a list; data-driven criteria refuse to run without them."""
    from spiralprune.pipeline.prune.group import Calibration, loss_of

    batches = Calibration(calibration if calibration is not None else [], loss_of(calibration))
    if get_criterion(name).needs_calibration and not batches:
        raise InputError(f"pruning criterion '{name}' needs calibration data (batches of inputs and labels)")
    return batches
