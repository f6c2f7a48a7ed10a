"""The unit of structured pruning: one Torch-Pruning dependency group, named by its root layer.

Its own module so the criteria (which score groups) and the graph (which finds them) both depend on
it, and neither on the other. It also holds what the criterion modules share: the calibration batch
type, which items of a group shrink their module's output channels, and how their work splits across
the processes of a process group (``share``, ``summed``: ``spiralprune.pipeline.scoring`` runs them so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

Batch = tuple[Tensor, Any]  # one calibration batch: inputs, targets
BatchLoss = Callable[[nn.Module, Batch], Tensor]


def cross_entropy(model: nn.Module, batch: Batch) -> Tensor:
    """A classifier's loss on a batch, the criteria's loss unless the batches bring the task's."""
    inputs, labels = batch
    return F.cross_entropy(model(inputs), labels)


class Calibration(list):
    """Calibration batches with the loss the data-driven criteria compute on them (the task's,
    ``spiralprune.pipeline.tasks.Task.batch_loss``); a plain list of batches is a classifier's."""

    def __init__(self, batches: Iterable[Batch] = (), loss: BatchLoss = cross_entropy) -> None:
        super().__init__(batches)
        self.loss = loss


# Training batches the loss-aware criteria score channels on (``sensitivity`` reads the first two).
CALIBRATION_BATCHES = 4


def draw_calibration(dataset: Dataset, batch_size: int, collate_fn: Callable | None, loss: BatchLoss,
                        *, seed: int | None) -> Calibration:
    """The ``CALIBRATION_BATCHES`` batches of ``dataset`` the loss-aware criteria score channels on, drawn at
    random with ``seed`` (None: the first ones in the data set's order).

    A run draws them at random: an ImageFolder lists its images class by class, so its first batches
    are of its first class alone, and a criterion that measures the loss on them keeps the channels that
    class needs (``benchmarks/quality_frontier.py --equal-structure``, docs/landing/2026-12-07.md)."""
    order = {} if seed is None else {"shuffle": True, "generator": torch.Generator().manual_seed(seed)}
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, **order)
    return Calibration([b for _, b in zip(range(CALIBRATION_BATCHES), loader)], loss)


def loss_of(calibration: Iterable[Batch] | None) -> BatchLoss:
    return getattr(calibration, "loss", cross_entropy)


@dataclass(frozen=True)
class PrunableGroup:
    """A prunable group: ``group`` lists every channel of ``root``; ``unit`` channels go together."""

    group: tp.dependency.Group
    root: str
    members: tuple[str, ...]
    channels: int
    unit: int


def is_out(handler: Callable) -> bool:
    return getattr(handler, "__name__", "") == "prune_out_channels"


def share(count: int) -> range:
    """The indices of ``count`` work items (groups, blocks, batches) this process does: all of them alone, in
    a process group every ``world_size``-th from its rank (items of one kind cost about the same)."""
    if not dist.is_initialized():
        return range(count)
    return range(dist.get_rank(), count, dist.get_world_size())


def summed(sizes: list[int], mine: dict[int, Tensor]) -> list[Tensor]:
    """Per item ``i``, ``sizes[i]`` float64 values: the sum over the process group's processes of what each
    computed for it (``mine``: this process's; an item a process left out counts zero, so an item of one
    process's ``share`` comes back exactly as it computed it). Alone, ``mine`` as float64."""
    flat = torch.zeros(sum(sizes), dtype=torch.float64)
    parts = flat.split(sizes)
    for i, values in mine.items():
        parts[i].copy_(values.reshape(-1))
    if dist.is_initialized():
        dist.all_reduce(flat)
    return list(flat.split(sizes))
