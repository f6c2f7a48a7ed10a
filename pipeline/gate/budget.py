"""The release budget of ``spiralprune gate``: one YAML file (``spiralprune.deploy.budget.Budget``'s keys, the same as a
run's ``budget:``), validated whole before anything is measured.

```yaml
latency:   {statistic: p50, max_ms: 5.0, max_regression_pct: 5, between_run_tolerance: 0.10}
           # also min_speedup (over the released model) and min_throughput (items/s at the measured batch)
accuracy:  {min: 95.0, max_drop: 0.5}      # percent; max_drop in points below the baseline
# or, for another task: task: {kind: segmentation}   metric: {name: miou, max_drop: 1.0}
size:      {max_mb: 20, max_params: 5000000}
parity:    {atol: 1.0e-3, min_top1_agreement: 0.99, samples: 256}
profile:   {max_duration_s: 10, confidence: 0.95}   # how latency is measured (spiralprune.deploy.sampling.ProfileSettings)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from spiralprune.deploy.budget import Budget
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.validation import read_yaml, validate
from spiralprune.pipeline.config import check_quality
from spiralprune.pipeline.tasks.config import TaskConfig

if TYPE_CHECKING:
    from spiralprune.pipeline.tasks import Metric


class GateBudget(Budget):
    """A release budget: a ``spiralprune.deploy.budget.Budget`` whose relative limits (``min_speedup``,
    ``max_regression_pct``, ``max_drop``) compare with the released model, plus the ``task`` whose
    metric the quality part judges and how latency is measured (``profile``: its confidence is the
    latency verdicts')."""

    task: TaskConfig = TaskConfig()
    profile: ProfileSettings = ProfileSettings()

    @model_validator(mode="after")
    def _task_quality(self) -> GateBudget:
        from spiralprune.pipeline.tasks import build_task  # the tasks import torch; a budget's keys alone do not

        if self.quality is not None:
            check_quality(self.quality, build_task(self.task), "metric" if self.accuracy is None else "accuracy")
        return self

    def quality_metric(self) -> Metric:
        """The metric the quality part judges, as its task measures it."""
        from spiralprune.pipeline.tasks import build_task

        return build_task(self.task).quality(self.quality.name if self.quality else None)

    @property
    def needs_baseline(self) -> list[str]:
        """The checks that compare against a baseline."""
        needs = []
        if self.latency is not None:
            needs += [f"latency.{k}" for k in ("min_speedup", "max_regression_pct") if getattr(self.latency, k) is not None]
        if self.quality and self.quality.max_drop is not None:
            needs.append(f"{self.quality.name or self.quality_metric().name}.max_drop")
        return needs


def parse_budget(data: Any, source: str = "budget") -> GateBudget:
    return validate(GateBudget, data, source)


def load_budget(path: Path) -> GateBudget:
    return parse_budget(read_yaml(path, "budget"), str(path))
