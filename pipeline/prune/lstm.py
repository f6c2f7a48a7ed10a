"""Hidden-unit pruning for single-layer, unidirectional ``nn.LSTM``.

Torch-Pruning 1.6's own LSTM pruner slices ``weight_hh`` and ``weight_ih`` along the wrong
dimensions (it fails with an index error), so this one is registered in its place.
A hidden unit owns one row in each of the four gate blocks (i, f, g, o) of every weight and bias,
and one column of ``weight_hh``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc


def gate_rows(units: Sequence[int], hidden_size: int) -> list[int]:
    """Rows of ``weight_ih``/``weight_hh``/biases that belong to ``units``, in gate order."""
    return [gate * hidden_size + unit for gate in range(4) for unit in units]


class LSTMHiddenPruner(BasePruningFunc):
    TARGET_MODULES = nn.LSTM

    def prune_out_channels(self, layer: nn.LSTM, idxs: Sequence[int]) -> nn.LSTM:
        removed = set(idxs)
        keep = [i for i in range(layer.hidden_size) if i not in removed]
        rows = gate_rows(keep, layer.hidden_size)
        _select(layer, "weight_ih_l0", rows, 0)
        _select(layer, "weight_hh_l0", rows, 0)
        _select(layer, "weight_hh_l0", keep, 1)
        if layer.bias:
            _select(layer, "bias_ih_l0", rows, 0)
            _select(layer, "bias_hh_l0", rows, 0)
        layer.hidden_size = len(keep)
        return layer

    def prune_in_channels(self, layer: nn.LSTM, idxs: Sequence[int]) -> nn.LSTM:
        removed = set(idxs)
        keep = [i for i in range(layer.input_size) if i not in removed]
        _select(layer, "weight_ih_l0", keep, 1)
        layer.input_size = len(keep)
        return layer

    def get_out_channels(self, layer: nn.LSTM) -> int:
        return layer.hidden_size

    def get_in_channels(self, layer: nn.LSTM) -> int:
        return layer.input_size


def _select(layer: nn.LSTM, name: str, keep: list[int], dim: int) -> None:
    old = getattr(layer, name)
    index = torch.tensor(keep, dtype=torch.long, device=old.device)
    # nn.LSTM's __setattr__ refreshes its flat weight list when a named weight is replaced.
    setattr(layer, name, nn.Parameter(old.detach().index_select(dim, index), requires_grad=old.requires_grad))
