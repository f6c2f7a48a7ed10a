"""NNI criteria (``l1``, ``l2``, ``fpgm``, ``taylor``): NNI's pruners score the channels of each group.

NNI's pruner runs on a copy of the model, and the per-channel metrics it computes to decide its masks
are taken; each member layer's metrics are divided by their mean and averaged over the group, so
coupled layers get one score per channel. NNI's masks and its ``ModelSpeedup`` are not used: removal
is Torch-Pruning's (see ``spiralprune.pipeline.prune.graph``). The registry is
``spiralprune.pipeline.prune.criteria``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune.group import Batch, PrunableGroup, is_out, loss_of

# NNI wants some sparsity to build masks; only the metrics behind them are read.
_NNI_MASK_RATIO = 0.5


def nni_scorer(pruner_name: str) -> Callable[[nn.Module, list[PrunableGroup], list[Batch]], list[Tensor | None]]:
    def score(model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]) -> list[Tensor | None]:
        metrics = _nni_metrics(pruner_name, model, groups, calibration)
        names = {module: name for name, module in model.named_modules()}
        return [_aggregate(group, metrics, names) for group in groups]

    return score


def _nni_metrics(
    pruner_name: str, model: nn.Module, groups: list[PrunableGroup], calibration: list[Batch]
) -> dict[str, Tensor]:
    """Per-output-channel metrics NNI computes for every member layer it can score."""
    import nni.compression.pruning as nni_pruning
    from nni.compression.base.setting import PruningSetting

    layers = {name: model.get_submodule(name) for c in groups for name in c.members}
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

    loss = loss_of(calibration)

    def training_step(batch: Batch, model: nn.Module) -> Tensor:
        return loss(model, batch)

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        model.eval()  # batch statistics of a few calibration batches would blur BatchNorm
        for batch in calibration[:max_steps]:
            optimizers.zero_grad()
            training_step(batch, model).backward()
            optimizers.step()

    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=0.0)
    return TorchEvaluator(training_func, optimizer, training_step)


def _aggregate(group: PrunableGroup, metrics: dict[str, Tensor], names: dict[nn.Module, str]) -> Tensor | None:
    """Mean over the group's scored members of each member's metrics divided by their mean."""
    total = torch.zeros(group.channels)
    count = torch.zeros(group.channels)
    for item in group.group.items:
        name = names.get(item.dep.target.module)
        if name not in metrics or not is_out(item.dep.handler):
            continue
        metric = metrics[name]
        normalized = metric / metric.mean().clamp_min(torch.finfo(metric.dtype).tiny)
        root = torch.tensor(item.root_idxs, dtype=torch.long)
        total.index_add_(0, root, normalized[torch.tensor(item.idxs, dtype=torch.long)])
        count.index_add_(0, root, torch.ones(len(root)))
    if not bool((count > 0).all()):
        return None
    return total / count


# The scorers ``spiralprune.pipeline.prune.criteria.CRITERIA`` names.
l1 = nni_scorer("L1NormPruner")
l2 = nni_scorer("L2NormPruner")
fpgm = nni_scorer("FPGMPruner")
taylor = nni_scorer("TaylorPruner")
