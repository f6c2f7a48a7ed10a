"""The distillation losses, one per function. Each returns a scalar and computes in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def logits_kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.: KL(teacher_T || student_T) averaged over the batch, times T² so that the
    gradient scale does not shrink as the temperature grows."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def feature_kd_loss(student_feat: Tensor, teacher_feat: Tensor, adapter: nn.Module) -> Tensor:
    """FitNets hint: mean squared error between the adapted student feature and the teacher's."""
    return F.mse_loss(adapter(student_feat).float(), teacher_feat.float())


def contrastive_kd_loss(
    student_emb: Tensor, teacher_emb: Tensor, head_s: nn.Module, head_t: nn.Module, temperature: float
) -> Tensor:
    """InfoNCE: each student embedding must pick its own sample's teacher embedding among the batch's
    (the other samples are the negatives), on L2-normalised outputs of learned projection heads."""
    queries = F.normalize(head_s(student_emb).float(), dim=-1)
    keys = F.normalize(head_t(teacher_emb).float(), dim=-1)
    similarities = queries @ keys.T / temperature
    return F.cross_entropy(similarities, torch.arange(len(queries), device=queries.device))
