"""Attention whose heads can be removed.

``nn.MultiheadAttention`` packs q, k and v into one matrix and ties its inner width to ``embed_dim``,
so Torch-Pruning can only shrink the residual width through it, which splits heads unevenly.
``SplitAttention`` computes the same function with separate q/k/v projections: Torch-Pruning's
dependency graph then couples q, k, v and the output projection into one group of inner channels,
and the planner removes whole heads (blocks of ``head_dim`` channels) from it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_pruning.utils import op_counter

from spiralprune.core.errors import InputError


class SplitAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention`` (same call signature and outputs) with separate projections."""

    # Read by nn.TransformerEncoderLayer's fast-path checks: None routes it to the regular path,
    # since the fused kernel needs nn.MultiheadAttention's packed weights.
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(
        self, embed_dim: int, num_heads: int, head_dim: int, *, dropout: float, batch_first: bool, bias: bool
    ) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.batch_first = batch_first
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if attn_mask is None and is_causal:
            length, source = scores.shape[-2:]
            attn_mask = torch.ones(length, source, dtype=torch.bool, device=scores.device).triu(1)
        if attn_mask is not None:
            if attn_mask.dim() != 2:
                raise ValueError("SplitAttention takes a 2-D attn_mask (target length x source length)")
            scores = scores + _additive(attn_mask, scores.dtype)
        if key_padding_mask is not None:
            scores = scores + _additive(key_padding_mask, scores.dtype)[:, None, None, :]
        weights = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        out = self.out_proj((weights @ v).transpose(1, 2).flatten(2))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def sync_num_heads(self) -> None:
        """Update ``num_heads`` after whole heads were removed from the projections."""
        inner = self.q_proj.out_features
        if inner % self.head_dim or {self.k_proj.out_features, self.v_proj.out_features, self.out_proj.in_features} != {
            inner
        }:
            raise ValueError(f"attention projections no longer hold whole heads of {self.head_dim} channels")
        self.num_heads = inner // self.head_dim


def _count_macs(module: SplitAttention, inputs: tuple[Tensor, ...], output: object) -> None:
    """Torch-Pruning's MultiheadAttention count with the inner width, so splitting never changes MACs."""
    query, key, value = inputs[:3]
    length = 1 if module.batch_first else 0
    batch = query.shape[1 - length]
    q_len, k_len, v_len = query.shape[length], key.shape[length], value.shape[length]
    inner, embed, bias = module.num_heads * module.head_dim, module.embed_dim, module.q_proj.bias is not None
    macs = q_len * inner + (q_len + k_len + v_len) * embed * inner + (q_len + k_len + v_len) * inner * bias
    macs += module.num_heads * q_len * k_len * (2 * module.head_dim + 1)
    macs += q_len * inner * embed + q_len * embed
    module.__flops__ += int(macs * batch)


# The counter treats a registered module as a leaf, so the projections are counted above.
op_counter.MODULES_MAPPING[SplitAttention] = _count_macs


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def split_attention(model: nn.Module) -> nn.Module:
    """Replace every ``nn.MultiheadAttention`` in ``model`` (in place) by an equivalent ``SplitAttention``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, _split(name, module))
    return model


def _split(name: str, mha: nn.MultiheadAttention) -> SplitAttention:
    if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        raise InputError(
            f"layer '{name}' (MultiheadAttention with kdim/vdim, bias_k/bias_v or add_zero_attn) blocks pruning: "
            "only attention whose q, k and v share embed_dim can be pruned"
        )
    bias = mha.in_proj_bias is not None
    split = SplitAttention(
        mha.embed_dim, mha.num_heads, mha.head_dim, dropout=mha.dropout, batch_first=mha.batch_first, bias=bias
    ).to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
    with torch.no_grad():
        for proj, weight in zip((split.q_proj, split.k_proj, split.v_proj), mha.in_proj_weight.chunk(3)):
            proj.weight.copy_(weight)
        if bias:
            for proj, b in zip((split.q_proj, split.k_proj, split.v_proj), mha.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
        split.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            split.out_proj.bias.copy_(mha.out_proj.bias)
    split.train(mha.training)
    return split
