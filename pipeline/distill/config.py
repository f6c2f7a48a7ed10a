"""Distillation settings: one frozen, validated config; the spiral controller passes it to ``distill``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from spiralprune.deploy.strict import Strict


class LossWeights(Strict):
    """Weights of the summed loss. With no teacher, training is plain cross-entropy and these are unused.

    The default is cross-entropy alone, as ``benchmarks/quality_frontier.py`` favoured on
    Fashion-MNIST (2026-11-30, three seeds; docs/benchmarks.md): on the same pruned structure and epochs, Hinton
    KD (logits 1, T 4) was 1.5 (ResNet) and 2.2 (MobileNetV2) points below cross-entropy at 3x the
    teacher's speed and 1.0 below at 4x (ResNet), where a default must earn 0.5 above; on the YOLO-style
    detector at 2x (2026-12-07, three seeds, same structure and epochs) feature KD was 1.1 points of mAP
    below its task loss alone. Set ``logits`` (and ``feature``, ``contrastive``) to distill.
    """

    ce: float = Field(1.0, ge=0)
    logits: float = Field(0.0, ge=0)
    feature: float = Field(0.0, ge=0)
    contrastive: float = Field(0.0, ge=0)

    @property
    def uses_teacher(self) -> bool:
        return self.logits + self.feature + self.contrastive > 0

    @model_validator(mode="after")
    def _some_weight(self) -> LossWeights:
        if self.ce + self.logits + self.feature + self.contrastive == 0:
            raise ValueError("all loss weights are 0; give at least one a positive value")
        return self


class DistillConfig(Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=2)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(0.5, ge=0)
    temperature: float = Field(4.0, gt=0)
    weights: LossWeights = LossWeights()
    # (student module, teacher module) pairs, or "auto": stages paired by equal spatial size
    feature_pairs: Annotated[list[tuple[str, str]], Field(min_length=1)] | Literal["auto"] = "auto"
    contrastive_temperature: float = Field(0.1, gt=0)
    projection_dim: int = Field(64, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1)
    bn_recalibration_batches: int = Field(20, ge=0)
    teacher: Literal["original", "previous"] = "original"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
