"""A sequence classifier: one LSTM layer, its last hidden state, a linear classifier."""

from __future__ import annotations

from torch import Tensor, nn


class LSTMClassifier(nn.Module):
    def __init__(self, n_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.classifier(out[:, -1])


def lstm_classifier(n_features: int = 40, hidden: int = 128, num_classes: int = 10) -> nn.Module:
    """Input: float ``[batch, time, n_features]``; output: ``[batch, num_classes]`` logits."""
    return LSTMClassifier(n_features, hidden, num_classes)
