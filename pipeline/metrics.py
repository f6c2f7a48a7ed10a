"""Classification metrics the step report shows: top-1 accuracy, macro precision / recall / F1, confusion matrix
(``spiralprune.pipeline.tasks.classification`` feeds them)."""

from __future__ import annotations

import numpy as np

from spiralprune.core.errors import InputError


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

