"""A small text classifier: token embedding, learned positions, ``nn.TransformerEncoder``, mean pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextTransformer(nn.Module):
    def __init__(
        self, vocab_size: int, seq_len: int, d_model: int, nhead: int, dim_feedforward: int, num_layers: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(torch.randn(1, seq_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=dim_feedforward, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens) + self.positions[:, : tokens.shape[1]]
        x = self.encoder(x)
        return self.classifier(self.norm(x.mean(dim=1)))


def text_transformer(
    vocab_size: int = 2000,
    seq_len: int = 64,
    d_model: int = 128,
    nhead: int = 4,
    dim_feedforward: int = 256,
    num_layers: int = 2,
    num_classes: int = 4,
) -> nn.Module:
    """Input: int64 token ids ``[batch, seq_len]``; output: ``[batch, num_classes]`` logits."""
    return TextTransformer(vocab_size, seq_len, d_model, nhead, dim_feedforward, num_layers, num_classes)
