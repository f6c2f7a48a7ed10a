"""The ``taylor-group`` criterion: group first-order Taylor (Molchanov et al. 2019, as in HALP).

Its scores estimate the change of the loss when a channel is removed, so they compare across layers.
Also the out-channel slices a group's removal zeroes and the gradient context it is measured in,
which ``spiralprune.pipeline.prune.sensitivity`` reuses. The registry is ``spiralprune.pipeline.prune.criteria``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from spiralprune.pipeline.prune.group import Batch, PrunableGroup, is_out, loss_of, share, summed


def taylor_group(model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
    """Per channel, the sum over calibration batches of (sum of weight x gradient over its parameters)^2.

    Molchanov et al. 2019 ("Importance Estimation for Neural Network Pruning"), group variant as in
    HALP: removing channel ``c`` zeroes every out-channel slice coupled to it (conv/linear weight rows
    and biases, BatchNorm/InstanceNorm weight and bias, PReLU slopes, embedding columns, the four gate
    rows of an LSTM hidden unit; attention heads are the rows of their q/k/v projections), and the
    first-order change of the loss is the sum of ``w * dL/dw`` over those parameters. It is squared
    per batch, then summed over batches. In-channel slices of consumers are not added: they estimate
    the same removal again. A group with a channel no scorable slice covers is not scored (None). In a
    process group (``spiralprune.pipeline.scoring``) each process takes its ``share`` of the batches and
    every process gets the sums.
    ``model``'s weights, gradients, modes and ``requires_grad`` flags are left as they were.
    """
    slices = [out_slices(group) for group in groups]
    modules = list({id(m): m for items in slices if items for m, _, _ in items}.values())
    totals = {g: torch.zeros(c.channels, dtype=torch.float64) for g, c in enumerate(groups) if slices[g] is not None}
    loss = loss_of(calibration)
    with gradients(model):
        for b in share(len(calibration)):  # in a process group, each process its share of the batches
            model.zero_grad(set_to_none=True)
            loss(model, calibration[b]).backward()
            with torch.no_grad():
                change = {id(m): _weight_times_grad(m) for m in modules}
                for g, total in totals.items():
                    delta = torch.zeros_like(total)
                    for module, idxs, root in slices[g]:
                        delta.index_add_(0, root, change[id(module)][idxs])
                    total += delta.square()
    summed_over_batches = summed([c.channels for c in groups], totals)
    return [None if items is None else total.float() for total, items in zip(summed_over_batches, slices)]


def out_slices(group: PrunableGroup) -> list[tuple[nn.Module, Tensor, Tensor]] | None:
    """(module, its out indices, the root channels they belong to) per scorable out-channel slice.

    A module listed twice with the same indices (a depthwise conv or a BatchNorm reached on both of
    its sides) counts once. None when some channel of the group is covered by no slice.
    """
    seen, items = set(), []
    covered = torch.zeros(group.channels, dtype=torch.bool)
    for item in group.group.items:
        module = item.dep.target.module
        if not is_out(item.dep.handler) or not _has_taylor(module):
            continue
        key = (id(module), tuple(item.idxs), tuple(item.root_idxs))
        if key in seen:
            continue
        seen.add(key)
        root = torch.tensor(item.root_idxs, dtype=torch.long)
        items.append((module, torch.tensor(item.idxs, dtype=torch.long), root))
        covered[root] = True
    return items if items and bool(covered.all()) else None


def _has_taylor(module: nn.Module) -> bool:
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return module.affine
    if isinstance(module, nn.PReLU):
        return module.num_parameters > 1
    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.LSTM))


def _weight_times_grad(module: nn.Module) -> Tensor:
    """Sum of ``w * dL/dw`` per output channel of ``module`` (float64, on the CPU)."""
    if isinstance(module, nn.LSTM):  # rows are four gate blocks (i, f, g, o) of one row per hidden unit
        names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if module.bias else [])
        rows = sum(_per_index(getattr(module, name), 0) for name in names)
        return rows.view(4, module.hidden_size).sum(0)
    if isinstance(module, nn.Embedding):
        return _per_index(module.weight, 1)
    # ConvTranspose weights are (in, out / groups, ...): out channels are dim 1 unless depthwise.
    transposed = isinstance(module, nn.modules.conv._ConvNd) and module.transposed and module.groups == 1
    total = _per_index(module.weight, 1 if transposed else 0)
    bias = getattr(module, "bias", None)
    if isinstance(bias, Tensor):
        total = total + _per_index(bias, 0)
    return total


def _per_index(param: Tensor, dim: int) -> Tensor:
    if param.grad is None:  # the loss does not reach it
        return torch.zeros(param.shape[dim], dtype=torch.float64)
    product = (param.detach().double() * param.grad.double()).movedim(dim, 0)
    return product.reshape(product.shape[0], -1).sum(1).cpu()


@contextmanager
def gradients(model: nn.Module) -> Iterator[None]:
    """Eval mode (a few calibration batches' statistics would blur BatchNorm), every parameter
    requiring grad; modes, flags and the gradients the model had are restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    saved = [(param, param.requires_grad, param.grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _, _ in saved:
            param.requires_grad_(True)
            param.grad = None
        with torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad, grad in saved:
            param.grad = grad
            param.requires_grad_(requires_grad)
