"""Accuracy of the compiled model: the ONNX file run by the target's runtime on the validation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from spiral.deploy.backends import get_backend
from spiral.pipeline.metrics import classification_metrics


def evaluate_onnx(onnx_path: Path, dataset: Dataset, num_classes: int, *, batch_size: int = 64) -> dict:
    predictions, labels = [], []
    with get_backend("ort-cpu")(onnx_path).load() as runner:
        for inputs, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            logits = next(iter(runner.infer({"input": inputs.numpy()}).values()))
            predictions.append(logits.argmax(-1))
            labels.append(targets.numpy())
    return classification_metrics(np.concatenate(labels), np.concatenate(predictions), num_classes)
