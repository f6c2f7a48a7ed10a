import math

import pytest
import torch
from torch import nn

from spiralprune.pipeline.distill.losses import contrastive_kd_loss, feature_kd_loss, logits_kd_loss


def _softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_logits_kd_is_batch_mean_kl_times_t_squared(temperature: float) -> None:
    student = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    teacher = [[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    expected = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        expected += sum(t * math.log(t / s) for s, t in zip(p_s, p_t))
    expected = expected / 2 * temperature**2

    loss = logits_kd_loss(torch.tensor(student), torch.tensor(teacher), temperature)

    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_logits_kd_is_zero_for_identical_logits_and_shift_invariant() -> None:
    logits = torch.tensor([[3.0, -1.0, 0.5]])
    assert logits_kd_loss(logits, logits + 7.0, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_feature_kd_is_mse_of_adapted_student_feature() -> None:
    adapter = nn.Conv2d(1, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
    student = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    # adapted: channel 0 = [2, 4, 6, 8], channel 1 = [-1, -2, -3, -4]; squared sum = 120 + 30 over 8 values
    loss = feature_kd_loss(student, teacher, adapter)
    assert loss.item() == pytest.approx(150 / 8)

    loss.backward()
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0


def test_feature_kd_with_linear_adapter_on_tokens() -> None:
    adapter = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([[1.0, 1.0]]))
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # [B=1, N=2, C=2]
    teacher = torch.tensor([[[3.0], [5.0]]])
    # adapted = [3, 7]; errors 0 and 2 -> mse 2
    assert feature_kd_loss(student, teacher, adapter).item() == pytest.approx(2.0)


def test_contrastive_kd_is_infonce_over_in_batch_negatives() -> None:
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    temperature = 0.5
    # normalised: s = [1, 0], [0, 1]; t = [0.6, 0.8], [0, 1]
    sims = [[0.6 / temperature, 0.0], [0.8 / temperature, 1.0 / temperature]]
    expected = sum(-math.log(math.exp(row[i]) / sum(math.exp(v) for v in row)) for i, row in enumerate(sims)) / 2

    loss = contrastive_kd_loss(student, teacher, nn.Identity(), nn.Identity(), temperature)

    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_kd_trains_both_projection_heads() -> None:
    torch.manual_seed(0)
    head_s, head_t = nn.Linear(3, 4), nn.Linear(5, 4)
    loss = contrastive_kd_loss(torch.randn(6, 3), torch.randn(6, 5), head_s, head_t, 0.1)
    loss.backward()
    assert head_s.weight.grad.abs().sum() > 0 and head_t.weight.grad.abs().sum() > 0
