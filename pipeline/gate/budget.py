"""The release budget of ``spiral gate``: one YAML file, validated whole before anything is measured.

```yaml
latency:   {statistic: p50, max_ms: 5.0, max_regression_pct: 5, between_run_tolerance: 0.10}
accuracy:  {min: 95.0, max_drop: 0.5}      # percent; max_drop in points below the baseline
# or, for another task: task: {kind: segmentation}   metric: {name: miou, max_drop: 1.0}
size:      {max_mb: 20, max_params: 5000000}
parity:    {atol: 1.0e-3, min_top1_agreement: 0.99, samples: 256}
profile:   {max_duration_s: 10, confidence: 0.95}   # how latency is measured (spiral.deploy.sampling.ProfileSettings)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spiral.deploy.sampling import ProfileSettings
from spiral.deploy.validation import read_yaml, validate
from spiral.pipeline.compare.profiles import BETWEEN_RUN_TOLERANCE
from spiral.pipeline.config import ParityConfig, QualityBudget, check_quality, quality_budget
from spiral.pipeline.tasks import Metric, TaskConfig, build_task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LatencyBudget(_Strict):
    """``max_ms`` on ``statistic``, and/or at most ``max_regression_pct`` slower than the baseline.

    Both are questions for ``spiral.deploy.verdict``: ``max_ms`` is met when the upper confidence bound of
    the candidate's per-round statistic is within it; the regression limit ``1 + max_regression_pct
    / 100`` is judged on the per-round ratios when the baseline model is measured beside the
    candidate (``--baseline-model``), or on two separate runs widened by ``between_run_tolerance``
    when the baseline is a stored profile (``--baseline``). Undecided fails the gate.
    """

    statistic: Literal["p50", "p90", "p95", "p99", "mean"] = "p50"
    max_ms: float | None = Field(None, gt=0)
    max_regression_pct: float | None = Field(None, ge=0)
    between_run_tolerance: float = Field(BETWEEN_RUN_TOLERANCE, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> LatencyBudget:
        if self.max_ms is None and self.max_regression_pct is None:
            raise ValueError("latency needs max_ms or max_regression_pct")
        return self


class SizeBudget(_Strict):
    """The ONNX file in MB (10^6 bytes) and the parameters stored in it."""

    max_mb: float | None = Field(None, gt=0)
    max_params: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SizeBudget:
        if self.max_mb is None and self.max_params is None:
            raise ValueError("size needs max_mb or max_params")
        return self


class GateBudget(_Strict):
    """A release budget. ``accuracy`` (a classifier's) or ``metric`` (the ``task``'s: mIoU, mAP, a custom
    metric) is the quality part (``spiral.pipeline.config.QualityBudget``)."""

    latency: LatencyBudget | None = None
    accuracy: QualityBudget | None = None
    metric: QualityBudget | None = None
    task: TaskConfig = TaskConfig()
    size: SizeBudget | None = None
    parity: ParityConfig | None = None
    # How latency is measured; its confidence is the confidence of the latency verdicts.
    profile: ProfileSettings = ProfileSettings()

    @model_validator(mode="after")
    def _check(self) -> GateBudget:
        if not any((self.latency, self.quality, self.size, self.parity)):
            raise ValueError("the budget checks nothing: give at least one of latency, accuracy (or metric), size, "
                             "parity")
        if self.quality is not None:
            check_quality(self.quality, build_task(self.task), "metric" if self.accuracy is None else "accuracy")
        return self

    @property
    def quality(self) -> QualityBudget | None:
        return quality_budget(self.accuracy, self.metric, "the budget")

    def quality_metric(self) -> Metric:
        """The metric the quality part judges, as its task measures it."""
        return build_task(self.task).quality(self.quality.name if self.quality else None)

    @property
    def needs_baseline(self) -> list[str]:
        """The checks that compare against a baseline."""
        needs = []
        if self.latency and self.latency.max_regression_pct is not None:
            needs.append("latency.max_regression_pct")
        if self.quality and self.quality.max_drop is not None:
            needs.append(f"{self.quality.name or self.quality_metric().name}.max_drop")
        return needs


def parse_budget(data: Any, source: str = "budget") -> GateBudget:
    return validate(GateBudget, data, source)


def load_budget(path: Path) -> GateBudget:
    return parse_budget(read_yaml(path, "budget"), str(path))
