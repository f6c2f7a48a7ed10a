"""The one budget type: what a model must meet, in the same keys wherever a budget is written.

A run config's ``budget:``, a ``spiralprune gate`` budget file, a deploy target's ``budget:`` and the INT8
stage's ``quantize.budget:`` are all a ``Budget``:

```yaml
latency:  {statistic: p50, max_ms: 5.0, min_speedup: 3.0, min_throughput: 2000, max_regression_pct: 5}
accuracy: {min: 95.0, max_drop: 0.5}        # or, for another task's metric: metric: {name: miou, max_drop: 1.0}
size:     {max_mb: 20, max_params: 5000000, max_macs: 300000000}
parity:   {atol: 1.0e-3, outputs: {boxes: 1.0e-2}, min_top1_agreement: 0.99, samples: 256}
```

Each key means one thing everywhere; what differs between callers is the *reference* a relative
limit compares with (``min_speedup``, ``max_regression_pct``, ``max_drop``): the teacher in a run, the
released model in the gate, the float model in the INT8 stage. A caller that cannot judge a key says
so in one line (``Budget.refuse``) rather than ignoring it. ``spiralprune.pipeline.acceptance.budget_rules``
compiles a budget to the rules every caller decides with.

It lives in ``spiralprune.deploy`` because a deploy target (``spiralprune.deploy.target_profiles``) holds one and
the device side imports nothing of ``spiralprune.pipeline``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from spiralprune.deploy.strict import Strict
from spiralprune.deploy.verdict import Question

# How much two runs of the same model on the same machine may differ (a stored baseline against a
# new measurement): the interval of their ratio is widened by it (``spiralprune compare``, ``spiralprune gate --baseline``).
BETWEEN_RUN_TOLERANCE = 0.10
Statistic = Literal["p50", "p90", "p95", "p99", "mean"]


class LatencyBudget(Strict):
    """Latency limits on ``statistic``, each a question for the judge (``spiralprune.deploy.verdict``).

    - ``max_ms``: met when the upper confidence bound of the per-round statistic is within it.
    - ``min_throughput``: items per second at the measured batch, i.e. one call within
      ``1000 * batch / min_throughput`` ms, judged like ``max_ms``.
    - ``min_speedup``: at least this many times faster than the reference, judged on the per-round
      ratios when the reference is measured beside the model.
    - ``max_regression_pct``: at most this many percent slower than the reference, judged the same way
      (a stored reference from another run: on two separate runs, the interval widened by
      ``between_run_tolerance``).
    """

    statistic: Statistic = "p50"
    max_ms: float | None = Field(None, gt=0)
    min_throughput: float | None = Field(None, gt=0)
    min_speedup: float | None = Field(None, gt=0)
    max_regression_pct: float | None = Field(None, ge=0)
    between_run_tolerance: float = Field(BETWEEN_RUN_TOLERANCE, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> LatencyBudget:
        if not self.limits():
            raise ValueError("latency needs max_ms, min_throughput, min_speedup or max_regression_pct")
        return self

    def limits(self) -> list[str]:
        """The limits given, by key."""
        return [k for k in ("max_ms", "min_throughput", "min_speedup", "max_regression_pct") if getattr(self, k) is not None]

    def questions(self, batch: int, subject: str, reference: str, prefix: str = "") -> list[Question]:
        """The limits as questions for the judge, named ``prefix`` + ``max_ms``, ``min_throughput``,
        ``regression`` (``max_regression_pct``) or ``min_speedup``, in that order: about ``subject``, the
        relative ones against ``reference``; ``batch``: the measured batch, what a throughput limit counts
        items of. What the reference is and how it is measured is the caller's (the released model, beside
        the candidate or stored, in ``spiralprune gate``; the baseline in ``spiralprune compare``)."""
        limits = [
            ("max_ms", self.max_ms, None),
            ("min_throughput", 1000 * batch / self.min_throughput if self.min_throughput else None, None),
            ("regression", 1 + self.max_regression_pct / 100 if self.max_regression_pct is not None else None,
             reference),
            ("min_speedup", 1 / self.min_speedup if self.min_speedup else None, reference),
        ]
        return [Question(f"{prefix}{name}", subject, limit, reference=ref, statistic=self.statistic)
                for name, limit, ref in limits if limit is not None]


class QualityBudget(Strict):
    """The task's quality metric (``name``; by default the task's own: accuracy, mIoU, mAP, a custom
    metric), in the units it is shown in (percent for the built-in tasks' fractions): at least ``min``
    (at most ``max`` for a lower-is-better metric), and/or at most ``max_drop`` worse than the
    reference. ``accuracy:`` is classification's spelling of ``metric:`` (its name is accuracy)."""

    name: str | None = None
    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)
    max_drop: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> QualityBudget:
        if self.max_drop is None and self.min is None and self.max is None:
            raise ValueError("a quality budget needs min (max, for a lower-is-better metric) or max_drop")
        if self.min is not None and self.max is not None:
            raise ValueError("give min (a higher-is-better metric) or max (a lower-is-better one), not both")
        return self


class SizeBudget(Strict):
    """What the ONNX file ships (``spiralprune.deploy.model_file.ModelFile``): its size in MB (10^6 bytes), the
    parameters stored in it, and the multiply-accumulates of one call (convolutions, matrix products)."""

    max_mb: float | None = Field(None, gt=0)
    max_params: int | None = Field(None, ge=1)
    max_macs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SizeBudget:
        if self.max_mb is None and self.max_params is None and self.max_macs is None:
            raise ValueError("size needs max_mb, max_params or max_macs")
        return self


class ParityBudget(Strict):
    """ONNX Runtime against the source torch model on ``samples`` inputs (validation data when there is
    some): every output's max |diff| within ``atol`` (scaled by that output's largest |value| above 1),
    or within ``outputs[name]`` for an output named there (a detector's box regressions beside its class
    logits), and the task's agreement (top-1, per pixel, reproduced detections) at least
    ``min_top1_agreement``."""

    atol: float = Field(1e-3, ge=0)
    outputs: dict[str, Annotated[float, Field(ge=0)]] = {}
    min_top1_agreement: float = Field(0.99, ge=0, le=1)
    samples: int = Field(256, ge=1)

    def atol_of(self, output: str) -> float:
        """The tolerance of one output, before it is scaled by the output's magnitude."""
        return self.outputs.get(output, self.atol)


class Budget(Strict):
    """What a model must meet (see the module docstring): ``latency``, the quality metric (``accuracy:``
    or ``metric:``), ``size`` and ``parity``."""

    latency: LatencyBudget | None = None
    accuracy: QualityBudget | None = None
    metric: QualityBudget | None = None
    size: SizeBudget | None = None
    parity: ParityBudget | None = None

    @model_validator(mode="after")
    def _check(self) -> Budget:
        if not any((self.latency, self.quality, self.size, self.parity)):  # ``quality`` refuses accuracy with metric
            raise ValueError("the budget checks nothing: give at least one of latency, accuracy (or metric), size, parity")
        return self

    @property
    def quality(self) -> QualityBudget | None:
        """The one quality budget of ``accuracy:`` (classification's spelling) or ``metric:``."""
        if self.accuracy is not None and self.metric is not None:
            raise ValueError("the budget gives both accuracy and metric: accuracy is classification's spelling of "
                             "metric, give one")
        if self.accuracy is not None and self.accuracy.name not in (None, "accuracy"):
            raise ValueError(f"accuracy names '{self.accuracy.name}'; name another metric under metric:")
        return self.accuracy.model_copy(update={"name": "accuracy"}) if self.accuracy is not None else self.metric

    def refuse(self, where: str, allowed: dict[str, tuple[str, ...] | None], why: str) -> None:
        """A ``ValueError`` naming the first key given that ``where`` cannot judge: ``allowed`` maps each
        part it judges to the keys it judges there (None: every key), ``why`` says what it judges."""
        for part in ("latency", "accuracy", "metric", "size", "parity"):
            value = getattr(self, part)
            if value is None:
                continue
            if part not in allowed:
                raise ValueError(f"{where}.{part}: {why}")
            keys = allowed[part]
            given = [k for k, f in type(value).model_fields.items()
                     if getattr(value, k) != f.default and k not in ("statistic", "name")]
            extra = [k for k in given if keys is not None and k not in keys]
            if extra:
                raise ValueError(f"{where}.{part}.{extra[0]}: {why}")


def filled(budget: Any, *, latency: dict | None = None, quality: dict, parity: dict | None = None) -> Any:
    """``budget`` (a mapping or a ``Budget``) with the parts it leaves out given: ``latency`` when it
    has none, ``quality`` as ``metric:`` when it has neither ``accuracy:`` nor ``metric:``, ``parity``.
    Anything but a mapping is left for validation to name."""
    if isinstance(budget, Budget):
        budget = budget.model_dump(exclude_none=True)
    if not isinstance(budget, dict):
        return budget
    out = dict(budget)
    for key, default in (("latency", latency), ("parity", parity)):
        if default is not None and out.get(key) is None:
            out[key] = default
    if out.get("accuracy") is None and out.get("metric") is None:
        out["metric"] = quality
    return out
