"""Pruning criteria: one registry entry per criterion, each scoring every channel of every candidate group.

NNI criteria (``l1``, ``l2``, ``fpgm``, ``taylor``) run NNI's pruner on a copy of the model and take
the per-channel metrics it computes to decide its masks; each member layer's metrics are divided by
their mean and averaged over the group, so coupled layers get one score per channel. NNI's masks and
its ``ModelSpeedup`` are not used: removal is Torch-Pruning's (see ``spiral.pipeline.prune.graph``).
Torch-Pruning criteria (``tp-*``) are its group importances, which aggregate over the group themselves
and divide by the group's mean (Torch-Pruning's default ``normalizer="mean"``).

All of these scores are comparable within a group only: every layer's average channel scores 1.
``taylor-group`` is not normalised: it estimates the change of the loss when a channel is removed,
so its scores compare across layers (``Criterion.comparable_across_layers``). ``sensitivity``
measures that change instead, for removing a growing share of each group (one group at a time).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spiral.deploy.errors import InputError
from spiral.pipeline.prune.group import PrunableGroup
from spiral.pipeline.prune.lstm import gate_rows

Batch = tuple[Tensor, Tensor]
# NNI wants some sparsity to build masks; only the metrics behind them are read.
_NNI_MASK_RATIO = 0.5


@dataclass(frozen=True)
class Criterion:
    summary: str
    needs_calibration: bool
    scorer: Callable[[nn.Module, list[PrunableGroup], list[Batch]], list[Tensor | None]] = field(repr=False)
    # True: scores of different groups are on one scale (an estimated loss change), so an allocator
    # may compare them directly; False: each group's scores are relative (normalised per layer).
    comparable_across_layers: bool = False

    def score(self, model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        """One score per channel of each candidate (higher = more important); None = cannot be scored.

        ``model`` keeps its structure and weights; ``taylor`` and ``tp-taylor`` leave gradients on it. NNI
        wraps the layers of a copy, never of ``model``.
        """
        return self.scorer(model, candidates, calibration)


# ---- NNI --------------------------------------------------------------------------------------


def _nni_scorer(pruner_name: str) -> Callable[[nn.Module, list[PrunableGroup], list[Batch]], list[Tensor | None]]:
    def score(model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        metrics = _nni_metrics(pruner_name, model, candidates, calibration)
        names = {module: name for name, module in model.named_modules()}
        return [_aggregate(candidate, metrics, names) for candidate in candidates]

    return score


def _nni_metrics(
    pruner_name: str, model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]
) -> dict[str, Tensor]:
    """Per-output-channel metrics NNI computes for every member layer it can score."""
    import nni.compression.pruning as nni_pruning
    from nni.compression.base.setting import PruningSetting

    layers = {name: model.get_submodule(name) for c in candidates for name in c.members}
    dense = sorted(n for n, m in layers.items() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)))
    lstms = sorted(n for n, m in layers.items() if isinstance(m, nn.LSTM))
    config_list = []
    if dense:
        config_list.append({"op_names": dense, "target_names": ["weight"], "sparse_ratio": _NNI_MASK_RATIO})
    if lstms:
        # NNI ships no setting for LSTM; its gate weights are scored row by row like a Linear's.
        weight = PruningSetting.default_setting["weight"]
        PruningSetting.register("LSTM", {"weight_ih_l0": weight, "weight_hh_l0": weight})
        config_list.append(
            {"op_names": lstms, "target_names": ["weight_ih_l0", "weight_hh_l0"], "sparse_ratio": _NNI_MASK_RATIO}
        )
    if not config_list:
        return {}
    pruner_cls = getattr(nni_pruning, pruner_name)
    recorded: dict = {}

    def record_metrics(self, data):  # NNI's own hook: the metrics it ranks channels by before masking
        metrics = pruner_cls._calculate_metrics(self, data)
        recorded.update(metrics)
        return metrics

    recording = type(f"Recording{pruner_name}", (pruner_cls,), {"_calculate_metrics": record_metrics})
    work = copy.deepcopy(model)
    try:
        if pruner_name == "TaylorPruner":
            pruner = recording(work, config_list, _nni_evaluator(work, calibration), training_steps=len(calibration))
        else:
            pruner = recording(work, config_list)
        pruner.compress()
    except Exception as exc:
        raise InputError(
            f"NNI's {pruner_name} failed on this model with torch {torch.__version__} ({type(exc).__name__}: "
            f"{exc}); use the Torch-Pruning criterion instead (tp-magnitude or tp-taylor)"
        ) from exc
    scores = {}
    for name, targets in recorded.items():
        rows = [metric.detach().flatten().float().cpu() for metric in targets.values()]
        if name in lstms:  # four gate rows per hidden unit, in both weight matrices
            hidden = layers[name].hidden_size
            scores[name] = sum(r.view(4, hidden).sum(0) for r in rows)
        else:
            scores[name] = rows[0]
    return scores


def _nni_evaluator(model: nn.Module, calibration: list[Batch]):
    """NNI's TorchEvaluator over the calibration batches; learning rate 0, so weights stay as they are."""
    import nni
    from nni.compression import TorchEvaluator

    def training_step(batch: Batch, model: nn.Module) -> Tensor:
        inputs, labels = batch
        return F.cross_entropy(model(inputs), labels)

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        model.eval()  # batch statistics of a few calibration batches would blur BatchNorm
        for batch in calibration[:max_steps]:
            optimizers.zero_grad()
            training_step(batch, model).backward()
            optimizers.step()

    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=0.0)
    return TorchEvaluator(training_func, optimizer, training_step)


def _aggregate(candidate: PrunableGroup, metrics: dict[str, Tensor], names: dict[nn.Module, str]) -> Tensor | None:
    """Mean over the group's scored members of each member's metrics divided by their mean."""
    total = torch.zeros(candidate.channels)
    count = torch.zeros(candidate.channels)
    for item in candidate.group.items:
        name = names.get(item.dep.target.module)
        if name not in metrics or not _is_out(item.dep.handler):
            continue
        metric = metrics[name]
        normalized = metric / metric.mean().clamp_min(torch.finfo(metric.dtype).tiny)
        root = torch.tensor(item.root_idxs, dtype=torch.long)
        total.index_add_(0, root, normalized[torch.tensor(item.idxs, dtype=torch.long)])
        count.index_add_(0, root, torch.ones(len(root)))
    if not bool((count > 0).all()):
        return None
    return total / count


def _is_out(handler: Callable) -> bool:
    return getattr(handler, "__name__", "") == "prune_out_channels"


# ---- Torch-Pruning ------------------------------------------------------------------------------


def _tp_scorer(
    make_importance: Callable[[], Callable], *, gradients: bool
) -> Callable[[nn.Module, list[PrunableGroup], list[Batch]], list[Tensor | None]]:
    def score(model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        if gradients:
            _accumulate_gradients(model, calibration)
        importance = make_importance()
        with torch.no_grad():
            return [_as_scores(importance(candidate.group)) for candidate in candidates]

    return score


def _as_scores(scores: Tensor | None) -> Tensor | None:
    return None if scores is None else scores.detach().float().cpu()


def _accumulate_gradients(model: nn.Module, calibration: list[Batch]) -> None:
    model.eval()
    model.zero_grad(set_to_none=False)
    with torch.enable_grad():
        for inputs, labels in calibration:
            F.cross_entropy(model(inputs), labels).backward()
    for param in model.parameters():  # layers the loss never reaches score zero
        if param.grad is None:
            param.grad = torch.zeros_like(param)


def _tp_magnitude() -> Callable:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def _tp_taylor() -> Callable:
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


def _tp_bn_scale() -> Callable:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


# ---- Group Taylor ------------------------------------------------------------------------------


def _taylor_group(model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
    """Per channel, the sum over calibration batches of (sum of weight x gradient over its parameters)^2.

    Molchanov et al. 2019 ("Importance Estimation for Neural Network Pruning"), group variant as in
    HALP: removing channel ``c`` zeroes every out-channel slice coupled to it (conv/linear weight rows
    and biases, BatchNorm/InstanceNorm weight and bias, PReLU slopes, embedding columns, the four gate
    rows of an LSTM hidden unit; attention heads are the rows of their q/k/v projections), and the
    first-order change of the loss is the sum of ``w * dL/dw`` over those parameters. It is squared
    per batch, then summed over batches. In-channel slices of consumers are not added: they estimate
    the same removal again. A group with a channel no scorable slice covers is not scored (None).
    ``model``'s weights, gradients, modes and ``requires_grad`` flags are left as they were.
    """
    slices = [_out_slices(candidate) for candidate in candidates]
    modules = list({id(m): m for items in slices if items for m, _, _ in items}.values())
    totals = [torch.zeros(c.channels, dtype=torch.float64) for c in candidates]
    with _gradients(model):
        for inputs, labels in calibration:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), labels).backward()
            with torch.no_grad():
                change = {id(m): _weight_times_grad(m) for m in modules}
                for total, items in zip(totals, slices):
                    if items is None:
                        continue
                    delta = torch.zeros_like(total)
                    for module, idxs, root in items:
                        delta.index_add_(0, root, change[id(module)][idxs])
                    total += delta.square()
    return [None if items is None else total.float() for total, items in zip(totals, slices)]


def _out_slices(candidate: PrunableGroup) -> list[tuple[nn.Module, Tensor, Tensor]] | None:
    """(module, its out indices, the root channels they belong to) per scorable out-channel slice.

    A module listed twice with the same indices (a depthwise conv or a BatchNorm reached on both of
    its sides) counts once. None when some channel of the group is covered by no slice.
    """
    seen, items = set(), []
    covered = torch.zeros(candidate.channels, dtype=torch.bool)
    for item in candidate.group.items:
        module = item.dep.target.module
        if not _is_out(item.dep.handler) or not _has_taylor(module):
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
def _gradients(model: nn.Module) -> Iterator[None]:
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



# ---- Measured sensitivity ----------------------------------------------------------------------

# Shares of a group's units removed at which its loss is measured (denser where deep prunes choose),
# on at most this many of the calibration batches: each point costs one forward pass per batch.
SENSITIVITY_FRACTIONS = (0.25, 0.5, 0.75, 0.875, 1.0)
SENSITIVITY_BATCHES = 2


def _sensitivity(model: nn.Module, candidates: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
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
    layout at 32x32, 11 groups, batches of 64: 86 s on two busy cores, a benchmark beside it).
    ``model``'s weights, gradients and modes are left as they were.
    """
    order_scores = _taylor_group(model, candidates, calibration)
    scores: list[Tensor | None] = []
    batches = calibration[:SENSITIVITY_BATCHES]
    with _gradients(model), torch.no_grad():
        full = _mean_loss(model, batches)
        for candidate, base in zip(candidates, order_scores):
            items = _out_slices(candidate)
            if base is None or items is None:
                scores.append(None)
                continue
            unit = candidate.unit
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
                    rises.append(max(0.0, _mean_loss(model, batches) - full))
            finally:
                for param, value in saved:
                    param.copy_(value)
            per_unit = torch.empty(units, dtype=torch.float64)
            per_unit[order] = _envelope_slopes([0, *counts], [0.0, *rises])
            # Equal slopes (one segment) keep the taylor-group order: a tie-break far below any slope.
            per_unit[order] += torch.arange(units, dtype=torch.float64) * 1e-9 * max(float(per_unit.max()), 1e-12) / units
            scores.append((per_unit / unit).repeat_interleave(unit))  # float64: the tie-break is below float32's step
    return scores


def sensitivity_counts(units: int) -> list[int]:
    """The numbers of a group's units removed at which ``sensitivity`` measures its loss."""
    return sorted({max(1, round(units * f)) for f in SENSITIVITY_FRACTIONS})


def _mean_loss(model: nn.Module, calibration: list[Batch]) -> float:
    return sum(float(F.cross_entropy(model(x), y)) for x, y in calibration) / len(calibration)


def _zero_out(module: nn.Module, idxs: Tensor) -> None:
    """Zero the out-channel slices ``idxs`` of ``module`` (the slices ``_weight_times_grad`` sums)."""
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

CRITERIA: dict[str, Criterion] = {
    "l1": Criterion("NNI L1NormPruner: L1 norm of each output filter", False, _nni_scorer("L1NormPruner")),
    "l2": Criterion("NNI L2NormPruner: L2 norm of each output filter", False, _nni_scorer("L2NormPruner")),
    "fpgm": Criterion(
        "NNI FPGMPruner: distance of each filter to the others (geometric median)", False, _nni_scorer("FPGMPruner")
    ),
    "taylor": Criterion(
        "NNI TaylorPruner: first-order Taylor estimate (weight x gradient)^2 on calibration batches",
        True,
        _nni_scorer("TaylorPruner"),
    ),
    "tp-magnitude": Criterion(
        "Torch-Pruning GroupMagnitudeImportance: L2 norm over every coupled slice of the group",
        False,
        _tp_scorer(_tp_magnitude, gradients=False),
    ),
    "tp-taylor": Criterion(
        "Torch-Pruning GroupTaylorImportance: |weight x gradient| over the group on calibration batches",
        True,
        _tp_scorer(_tp_taylor, gradients=True),
    ),
    "tp-bn-scale": Criterion(
        "Torch-Pruning BNScaleImportance: |gamma| of the group's BatchNorm layers (groups without one are kept)",
        False,
        _tp_scorer(_tp_bn_scale, gradients=False),
    ),
    "taylor-group": Criterion(
        "Group first-order Taylor (Molchanov 2019, as in HALP): per calibration batch, (sum of weight x "
        "gradient over every coupled slice of a channel)^2, summed over batches; not normalised per layer",
        True,
        _taylor_group,
        comparable_across_layers=True,
    ),
    "sensitivity": Criterion(
        "Measured sensitivity: each group alone, its channels zeroed in taylor-group order, the rise of the "
        "calibration loss at 1/4, 1/2, 3/4, 7/8 and all of them (convex envelope), per channel; comparable "
        "across layers",
        True,
        _sensitivity,
        comparable_across_layers=True,
    ),
}


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise InputError(f"unknown pruning criterion '{name}'; valid: {', '.join(CRITERIA)}")
    return CRITERIA[name]


def calibration_batches(name: str, calibration: Sequence[Batch] | None) -> list[Batch]:
    """The calibration batches as a list; data-driven criteria refuse to run without them."""
    batches = list(calibration) if calibration is not None else []
    if get_criterion(name).needs_calibration and not batches:
        raise InputError(f"pruning criterion '{name}' needs calibration data (batches of inputs and labels)")
    return batches
