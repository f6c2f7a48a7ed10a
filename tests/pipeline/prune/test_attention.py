"""SplitAttention computes what nn.MultiheadAttention computes, in every calling convention spiral meets."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.prune.attention import SplitAttention, split_attention


def _pair(batch_first: bool, bias: bool = True) -> tuple[nn.MultiheadAttention, nn.Module]:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, bias=bias).eval()
    with torch.no_grad():  # non-zero biases, so a misplaced bias slice would show
        for name, param in mha.named_parameters():
            if "bias" in name:
                param.normal_()
    holder = nn.Module()
    holder.attn = copy.deepcopy(mha)
    split_attention(holder)
    assert isinstance(holder.attn, SplitAttention)
    return mha, holder.attn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_same_outputs_and_weights(batch_first: bool, bias: bool) -> None:
    mha, split = _pair(batch_first, bias)
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    for average in (True, False):
        expected, expected_weights = mha(x, x, x, average_attn_weights=average)
        out, weights = split(x, x, x, average_attn_weights=average)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(weights, expected_weights, rtol=1e-5, atol=1e-5)


def test_masks_and_causality() -> None:
    mha, split = _pair(batch_first=True)
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    for kwargs in (
        {"key_padding_mask": padding},
        {"attn_mask": causal},
        {"attn_mask": causal.isinf()},
        {"attn_mask": causal, "is_causal": True},
    ):
        expected, _ = mha(x, x, x, need_weights=False, **kwargs)
        out, weights = split(x, x, x, need_weights=False, **kwargs)
        assert weights is None
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_transformer_encoder_keeps_its_outputs() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():  # the original takes PyTorch's fused fast path here, the split one cannot
        expected = encoder(x)
        actual = split_attention(copy.deepcopy(encoder))(x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_attention_with_its_own_key_width_is_refused() -> None:
    holder = nn.Module()
    holder.cross = nn.MultiheadAttention(16, 4, kdim=8, vdim=8)
    with pytest.raises(InputError, match=r"layer 'cross' \(MultiheadAttention with kdim/vdim"):
        split_attention(holder)


def test_heads_are_resynchronized_and_partial_heads_refused() -> None:
    _, split = _pair(batch_first=True)
    for proj in (split.q_proj, split.k_proj, split.v_proj):
        proj.out_features = 8
    split.out_proj.in_features = 8
    split.sync_num_heads()
    assert split.num_heads == 2
    split.q_proj.out_features = 6
    with pytest.raises(ValueError, match="whole heads"):
        split.sync_num_heads()


def test_splitting_keeps_the_mac_count() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 16)
    macs, params = tp.utils.count_ops_and_params(encoder, x)
    assert tp.utils.count_ops_and_params(split_attention(copy.deepcopy(encoder)), x) == (macs, params)
