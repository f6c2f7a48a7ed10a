"""The LSTM hidden-unit pruner removes exactly a unit's four gate rows and its recurrent column."""

from __future__ import annotations

import copy

import torch
from torch import nn

from spiralprune.pipeline.prune.lstm import LSTMHiddenPruner, gate_rows


def _lstm() -> nn.LSTM:
    torch.manual_seed(0)
    return nn.LSTM(6, 8, batch_first=True)


def test_removed_hidden_units_behave_like_zeroed_ones() -> None:
    original, units = _lstm(), [1, 4, 6]
    kept = [u for u in range(8) if u not in units]
    pruned = LSTMHiddenPruner().prune_out_channels(copy.deepcopy(original), units)
    zeroed = copy.deepcopy(original)
    with torch.no_grad():
        rows = torch.tensor(gate_rows(units, 8))
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(zeroed, name)[rows] = 0
        zeroed.weight_hh_l0[:, units] = 0
    x = torch.randn(2, 7, 6)
    out, (h, c) = pruned(x)
    expected, (h_ref, c_ref) = zeroed(x)
    assert pruned.hidden_size == 5 and out.shape == (2, 7, 5)
    torch.testing.assert_close(out, expected[..., kept])
    torch.testing.assert_close(expected[..., units], torch.zeros(2, 7, 3))  # zeroed units stay silent
    torch.testing.assert_close((h, c), (h_ref[..., kept], c_ref[..., kept]))


def test_removed_input_features_are_ignored() -> None:
    original = _lstm()
    pruned = LSTMHiddenPruner().prune_in_channels(copy.deepcopy(original), [0, 5])
    x = torch.randn(2, 7, 6)
    x[..., [0, 5]] = 0
    assert pruned.input_size == 4
    torch.testing.assert_close(pruned(x[..., 1:5])[0], original(x)[0])
