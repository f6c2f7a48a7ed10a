"""The ``sensitivity`` criterion: the measured rise of the calibration loss when each group alone
loses a growing share of its units, in ``taylor-group`` order (``spiralprune.pipeline.prune.taylor``).

The registry is ``spiralprune.pipeline.prune.criteria``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spiralprune.pipeline.prune.group import Batch, Calibration, PrunableGroup, loss_of, share, summed
from spiralprune.pipeline.prune.lstm import gate_rows
from spiralprune.pipeline.prune.taylor import gradients, out_slices, taylor_group

# Shares of a group's units removed at which its loss is measured (denser where deep prunes choose),
# on at most this many of the calibration batches: each point costs one forward pass per batch.
SENSITIVITY_FRACTIONS = (0.25, 0.5, 0.75, 0.875, 1.0)
SENSITIVITY_BATCHES = 2


def sensitivity(model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
    """Per channel, the measured rise of the calibration loss when its group loses it (and the less
    important channels before it), each group alone.

    ``taylor-group`` orders a group's units (channels, or heads: the sum of their channels); the
    group is then zeroed in place, least important unit first, and the mean cross-entropy over the
    first ``SENSITIVITY_BATCHES`` calibration batches is measured after each share of its units in
    ``SENSITIVITY_FRACTIONS`` (every out-channel slice
    ``taylor-group`` sums over is zeroed, which is what removing the channel computes). A unit's
    score is the slope of the lower convex envelope of (units removed, loss rise clamped at 0) over
    its segment, divided among its channels, so the scores of the first ``k`` units add up to at most
    the rise measured for removing them, and rise with the ``taylor-group`` order (its ties keep that
    order). First-order estimates are exact for one channel and blind to what removing most of a
    group costs (a residual stream cut to a few channels feeds every block of its stage); this
    measures it, at ``len(groups) * len(SENSITIVITY_FRACTIONS)`` forward passes per batch (ResNet-18
    layout at 32x32, 11 groups, batches of 64: 86 s on two busy cores, a benchmark beside it). In a
    process group (``spiralprune.pipeline.scoring``) each process measures its ``share`` of the groups
    (and of ``taylor-group``'s batches) and every process gets every score.
    ``model``'s weights, gradients and modes are left as they were.
    """
    order_scores = taylor_group(model, groups, calibration)
    measured: dict[int, Tensor] = {}
    batches = Calibration(calibration[:SENSITIVITY_BATCHES], loss_of(calibration))
    with gradients(model), torch.no_grad():
        full = mean_loss(model, batches)
        scorable = [g for g, base in enumerate(order_scores) if base is not None]
        for i in share(len(scorable)):  # in a process group, each process its share of the groups
            g = scorable[i]
            measured[g] = _measured(model, groups[g], order_scores[g], batches, full)
    scores = summed([c.channels for c in groups], measured)
    return [None if base is None else score for score, base in zip(scores, order_scores)]


def _measured(model: nn.Module, group: PrunableGroup, base: Tensor, batches: Calibration, full: float) -> Tensor:
    """``sensitivity``'s float64 scores of one group (``base``: its ``taylor-group`` scores), ``model`` restored."""
    items = out_slices(group)
    unit = group.unit
    order = torch.argsort(base.double().view(-1, unit).sum(1), stable=True)
    units = len(order)
    counts = sensitivity_counts(units)
    saved = [(p, p.detach().clone()) for m in {id(m): m for m, _, _ in items}.values() for p in m.parameters()]
    rises, removed = [], 0
    try:
        for count in counts:
            channels = (order[removed:count, None] * unit + torch.arange(unit)).flatten()
            for module, idxs, root in items:
                _zero_out(module, idxs[torch.isin(root, channels)])
            removed = count
            rises.append(max(0.0, mean_loss(model, batches) - full))
    finally:
        for param, value in saved:
            param.copy_(value)
    per_unit = torch.empty(units, dtype=torch.float64)
    per_unit[order] = _envelope_slopes([0, *counts], [0.0, *rises])
    # Equal slopes (one segment) keep the taylor-group order: a tie-break far below any slope.
    per_unit[order] += torch.arange(units, dtype=torch.float64) * 1e-9 * max(float(per_unit.max()), 1e-12) / units
    return (per_unit / unit).repeat_interleave(unit)  # float64: the tie-break is below float32's step


def sensitivity_counts(units: int) -> list[int]:
    """The numbers of a group's units removed at which ``sensitivity`` measures its loss."""
    return sorted({max(1, round(units * f)) for f in SENSITIVITY_FRACTIONS})


def mean_loss(model: nn.Module, calibration: list[Batch]) -> float:
    """The mean of the batches' loss (``spiralprune.pipeline.prune.group.loss_of``)."""
    loss = loss_of(calibration)
    return sum(float(loss(model, batch)) for batch in calibration) / len(calibration)


def _zero_out(module: nn.Module, idxs: Tensor) -> None:
    """Zero the out-channel slices ``idxs`` of ``module`` (the slices ``taylor``'s ``_weight_times_grad`` sums)."""
    if not len(idxs):
        return
    if isinstance(module, nn.LSTM):  # a hidden unit whose gate rows are zero stays 0 from a zero state
        rows = torch.tensor(gate_rows(idxs.tolist(), module.hidden_size), dtype=torch.long)
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            if getattr(module, name, None) is not None:
                getattr(module, name).index_fill_(0, rows, 0.0)
        return
    if isinstance(module, nn.Embedding):
        module.weight.index_fill_(1, idxs, 0.0)
        return
    transposed = isinstance(module, nn.modules.conv._ConvNd) and module.transposed and module.groups == 1
    module.weight.index_fill_(1 if transposed else 0, idxs, 0.0)
    bias = getattr(module, "bias", None)
    if isinstance(bias, Tensor):
        bias.index_fill_(0, idxs, 0.0)


def _envelope_slopes(xs: list[int], ys: list[float]) -> Tensor:
    """Per unit position ``0 .. xs[-1] - 1``, the slope of the lower convex envelope of the points."""
    hull = [0]
    for i in range(1, len(xs)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the chord from a to i: not part of the lower envelope
            if (ys[b] - ys[a]) * (xs[i] - xs[a]) >= (ys[i] - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    slopes = torch.empty(xs[-1], dtype=torch.float64)
    for a, b in zip(hull, hull[1:]):
        slopes[xs[a]:xs[b]] = (ys[b] - ys[a]) / (xs[b] - xs[a])
    return slopes
