import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from torch import nn
from torch.utils.data import TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.evaluate import evaluate_model
from spiralprune.pipeline.metrics import classification_metrics
from spiralprune.pipeline.tasks import build_task

CASES = {
    "random 10 classes": (10, range(10), range(10)),
    "class 4 never occurs nor is predicted": (5, [0, 1, 2, 3], [0, 1, 2, 3]),
    "class 3 occurs but is never predicted": (4, range(4), [0, 1, 2]),
    "class 2 is predicted but never occurs": (3, [0, 1], range(3)),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("num_classes", "true_pool", "pred_pool"), CASES.values(), ids=CASES.keys())
def test_metrics_match_scikit_learn(seed: int, num_classes: int, true_pool, pred_pool) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.choice(list(true_pool), size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.choice(list(pred_pool), size=200))
    y_pred = np.where(np.isin(y_pred, list(pred_pool)), y_pred, pred_pool[0])

    metrics = classification_metrics(y_true, y_pred, num_classes)

    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["precision_macro"] == pytest.approx(precision)
    assert metrics["recall_macro"] == pytest.approx(recall)
    assert metrics["f1_macro"] == pytest.approx(f1)
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(num_classes)).tolist()
    assert metrics["num_samples"] == 200


def test_perfect_predictions() -> None:
    labels = np.array([0, 1, 2, 2])
    metrics = classification_metrics(labels, labels, 3)
    assert [metrics[k] for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro")] == [1, 1, 1, 1]
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [([0, 10], [0, 1], "label 10 is outside the 10 classes"), ([0], [-1], "prediction -1"), ([], [], "empty")],
)
def test_bad_labels_are_input_errors(y_true, y_pred, message) -> None:
    with pytest.raises(InputError, match=message):
        classification_metrics(np.array(y_true), np.array(y_pred), 10)


def test_evaluate_runs_the_model_in_eval_mode_and_restores_its_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    inputs, labels = torch.randn(50, 4), torch.randint(0, 3, (50,))

    metrics = evaluate_model(model, TensorDataset(inputs, labels), build_task(), batch_size=16)

    assert model.training
    model.eval()
    expected = classification_metrics(labels.numpy(), model(inputs).argmax(-1).numpy(), 3)
    assert metrics == expected
