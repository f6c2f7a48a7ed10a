"""Classification metrics the step report shows: top-1 accuracy, macro precision / recall / F1, confusion matrix."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spiral.deploy.errors import InputError


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Macro averages run over the classes present in ``y_true`` or ``y_pred`` (as scikit-learn does);
    a class that is never predicted has precision 0, one that never occurs has recall 0."""
    y_true = np.asarray(y_true).astype(np.int64, copy=False).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64, copy=False).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    if y_true.size == 0:
        raise InputError("cannot compute accuracy on an empty validation set")
    for name, values in (("label", y_true), ("prediction", y_pred)):
        if values.min() < 0 or values.max() >= num_classes:
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise InputError(f"{name} {bad} is outside the {num_classes} classes 0..{num_classes - 1}")

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    hits = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    present = (predicted > 0) | (actual > 0)
    return {
        "accuracy": float(hits.sum() / y_true.size),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "num_samples": int(y_true.size),
        "confusion_matrix": confusion.tolist(),
    }


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, top-1 predictions, number of classes) of the torch model over ``dataset``, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, predictions, num_classes = [], [], 0
    try:
        for inputs, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            logits = model(inputs.to(device))
            num_classes = logits.shape[-1]
            predictions.append(logits.argmax(-1).cpu().numpy())
            labels.append(torch.as_tensor(targets).numpy())
    finally:
        model.train(was_training)
    if not labels:
        raise InputError("cannot evaluate on an empty validation set")
    return np.concatenate(labels), np.concatenate(predictions), num_classes


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict:
    """``classification_metrics`` of the torch model on ``dataset`` (classes = width of its output)."""
    y_true, y_pred, num_classes = predict(model, dataset, batch_size)
    return classification_metrics(y_true, y_pred, num_classes)
