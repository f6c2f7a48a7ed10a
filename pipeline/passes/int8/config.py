"""The INT8 pass's config block, ``quantize:`` in a run config (and ``spiralprune quantize``'s options)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spiralprune.deploy.budget import Budget, LatencyBudget, QualityBudget, filled

QUANTIZED_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt")  # the ONNX Runtime targets run QDQ models


class QuantizeConfig(BaseModel):
    """Post-training static INT8 quantization (ONNX Runtime, QDQ) and the rule that accepts it.

    Calibration runs ``calibration_batches`` training batches of ``batch_size`` through the float
    model; ``method`` picks the activation ranges from them. The quantized model is accepted only
    when it meets ``budget`` (``spiralprune.deploy.budget.Budget``) against its float model: the judge says it
    is at least ``latency.min_speedup`` times faster (paired rounds; default 1, not slower) and its
    metric (``accuracy:`` or ``metric:``) is at most ``max_drop`` worse (default 1 point).

    When the fully quantized model loses more than ``max_drop`` points, two remedies follow
    (``spiralprune.pipeline.passes.int8.model``), the cheap one first. The float fallback keeps up to
    ``max_float_nodes`` of its most sensitive Conv / Gemm / MatMul nodes float (0: no fallback, every
    operator INT8), measured on ``sensitivity_batches`` training batches held apart from the
    calibration ones (``spiralprune.pipeline.passes.int8.float_fallback``). If that still loses too much,
    quantization-aware recovery (``spiralprune.pipeline.passes.int8.fake_quant``): ``recovery_epochs`` of
    distillation from the teacher at ``recovery_lr`` through simulated INT8 (0: none; it needs the
    PyTorch model), the trained model quantized again. The model left is judged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_batches: int = Field(32, ge=1)
    batch_size: int = Field(32, ge=1)
    per_channel: bool = True
    budget: Budget = Budget(latency=LatencyBudget(min_speedup=1.0), metric=QualityBudget(max_drop=1.0))
    # A few float nodes usually hold the whole loss (an input or output layer, one with outlier
    # weights); each costs a float kernel between Q / DQ nodes, so past a handful INT8's speedup goes.
    max_float_nodes: int = Field(4, ge=0)
    # 8 x 32 = 256 samples: a top-1 disagreement resolution of 0.4 %, finer than the default max_drop.
    sensitivity_batches: int = Field(8, ge=1)
    # MobileNetV2 on Fashion-MNIST, per-tensor weights (docs/benchmarks.md, benchmarks/quantize_recovery.py): 5 epochs at
    # 0.001 recovered its 4x result to 80.4 +- 0.6 % (3 seeds); 0.002, 0.005 and 0.02 did no better (one seed),
    # and 0.005 diverged on a pruned test network (0.001 did not, though it gained nothing there).
    recovery_epochs: int = Field(5, ge=0)
    recovery_lr: float = Field(0.001, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _budget_defaults(cls, data: Any) -> Any:
        """What ``budget`` leaves out is the default's: both keys allowed below are then always set."""
        if isinstance(data, dict) and "budget" in data:
            data = {**data, "budget": filled(data["budget"], latency={"min_speedup": 1.0}, quality={"max_drop": 1.0})}
        return data

    @model_validator(mode="after")
    def _budget(self) -> "QuantizeConfig":
        self.budget.refuse("quantize.budget", {"latency": ("min_speedup",), "accuracy": ("max_drop",),
                                               "metric": ("max_drop",), "size": None},
                           "the INT8 stage judges its model against the float model (latency.min_speedup and "
                           "the metric's max_drop) and its file (size)")
        return self

    @property
    def max_drop(self) -> float:
        """The most the INT8 model's metric may be worse than the float model's, in shown units."""
        return self.budget.quality.max_drop

    @property
    def min_speedup(self) -> float:
        """How many times faster than the float model the INT8 model must be judged."""
        return self.budget.latency.min_speedup
