"""The gate's checks: each budget entry against what was measured, with the margin to the budget.

The margin is signed so that a positive value is headroom and a negative one the amount by
which the budget was missed, whichever way the budget points (a maximum or a minimum).
A latency check on an unstable measurement is ``inconclusive``, and inconclusive never passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from deploy.errors import InputError
from deploy.profiler import Profile
from pipeline.compare.profiles import ProfileComparison, compare_profiles
from pipeline.compare.stats import CompareSettings
from pipeline.export import ParityResult
from pipeline.gate.budget import GateBudget, ParityBudget

Status = Literal["pass", "fail", "inconclusive"]

_FORMATS = {
    "ms": "{:.3f} ms",
    "%": "{:.2f}%",
    "points": "{:.2f} points",
    "MB": "{:.3f} MB",
    "params": "{:,.0f} params",
    "cv": "{:.3f}",
    "": "{:.3g}",
}


def format_value(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = _FORMATS[unit].format(abs(value) if signed else value)
    return (("+" if value >= 0 else "-") + text) if signed else text


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    measured: float | None
    budget: float | None
    margin: float | None
    unit: str
    message: str

    def line(self) -> str:
        """``FAIL latency.p50.max_ms: measured 5.412 ms, budget 5.000 ms, margin -0.412 ms (why)``."""
        return (
            f"{self.status.upper()} {self.name}: measured {format_value(self.measured, self.unit)}, "
            f"budget {format_value(self.budget, self.unit)}, "
            f"margin {format_value(self.margin, self.unit, signed=True)} ({self.message})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateResult:
    checks: list[CheckResult]
    comparison: ProfileComparison | None = None

    @property
    def passed(self) -> bool:
        return all(c.status == "pass" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def problems(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status != "pass"]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "checks": [c.to_dict() for c in self.checks],
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }


def _at_most(name: str, measured: float, budget: float, unit: str, what: str) -> CheckResult:
    ok = measured <= budget
    relation = "within" if ok else "over"
    return CheckResult(name, "pass" if ok else "fail", measured, budget, budget - measured, unit,
                       f"{what} {relation} the maximum")


def _at_least(name: str, measured: float, budget: float, unit: str, what: str) -> CheckResult:
    ok = measured >= budget
    relation = "meets" if ok else "below"
    return CheckResult(name, "pass" if ok else "fail", measured, budget, measured - budget, unit,
                       f"{what} {relation} the minimum")


def _stability(budget: GateBudget, profile: Profile, batch: int | None) -> CheckResult:
    m = profile.measurement(batch)
    cv, max_cv = m.stats["cv"], budget.stability.max_cv
    if cv <= max_cv:
        return CheckResult("stability.cv", "pass", cv, max_cv, max_cv - cv, "cv",
                           f"batch {m.batch}: {len(m.samples_ms)} samples, cv {cv:.1%} <= {max_cv:.0%}")
    return CheckResult("stability.cv", "fail", cv, max_cv, max_cv - cv, "cv",
                       f"batch {m.batch}: the measurement is unstable (cv {cv:.1%} > {max_cv:.0%}); "
                       "latency checks are inconclusive: measure where nothing else competes for the CPU or GPU")


def _latency(
    budget: GateBudget, profile: Profile, baseline: Profile | None, batch: int | None, stable: bool
) -> tuple[list[CheckResult], ProfileComparison | None]:
    latency = budget.latency
    if latency is None:
        return [], None
    checks = []
    statistic = latency.statistic
    m = profile.measurement(batch)
    if latency.max_ms is not None:
        measured = profile.stat(statistic, m.batch)
        check = _at_most(f"latency.{statistic}.max_ms", measured, latency.max_ms, "ms", f"{statistic} at batch {m.batch}")
        if not stable:
            check = CheckResult(check.name, "inconclusive", measured, latency.max_ms, check.margin, "ms",
                                "the measurement is unstable, so this number cannot be trusted either way")
        checks.append(check)
    comparison = None
    if latency.max_regression_pct is not None:
        if baseline is None:
            raise InputError("the budget limits the regression against a baseline (latency.max_regression_pct); pass --baseline")
        threshold = max(latency.max_regression_pct, latency.min_effect_pct)
        settings = CompareSettings(min_effect_pct=threshold, alpha=latency.alpha, max_cv=budget.stability.max_cv)
        comparison = compare_profiles(baseline, profile, settings, statistic=statistic, batch=m.batch)
        s = comparison.deciding()[m.batch]
        ci = f"{100 * (1 - latency.alpha):g}% CI {100 * (s.ci_low - 1):+.1f}% .. {100 * (s.ci_high - 1):+.1f}%"
        p = comparison.batches[m.batch].p_value
        status: Status
        if s.verdict == "inconclusive":
            status, why = "inconclusive", comparison.batches[m.batch].note
        elif s.verdict == "regression":
            status, why = "fail", f"significant regression: {ci}, Mann-Whitney p = {p:.2g}, beyond +{threshold:g}%"
        else:
            status, why = "pass", f"no regression beyond +{threshold:g}%: {ci}, Mann-Whitney p = {p:.2g}"
        checks.append(CheckResult(
            f"latency.{statistic}.regression", status, s.change_pct, latency.max_regression_pct,
            latency.max_regression_pct - s.change_pct, "%",
            f"{statistic} {s.new_ms:.3f} ms vs baseline {s.base_ms:.3f} ms; {why}",
        ))
    return checks, comparison


def _accuracy(budget: GateBudget, metrics: dict | None, baseline_metrics: dict | None) -> list[CheckResult]:
    accuracy = budget.accuracy
    if accuracy is None:
        return []
    if metrics is None or "accuracy" not in metrics:
        raise InputError("the budget has an accuracy check but no accuracy was measured; pass --data")
    measured = 100 * metrics["accuracy"]
    checks = []
    if accuracy.min is not None:
        checks.append(_at_least("accuracy.min", measured, accuracy.min, "%", f"top-1 accuracy {measured:.2f}%"))
    if accuracy.max_drop is not None:
        if not baseline_metrics or "accuracy" not in baseline_metrics:
            raise InputError(
                "the budget limits the accuracy drop (accuracy.max_drop) but the baseline records no accuracy; "
                "use a gate or run report as --baseline"
            )
        base = 100 * baseline_metrics["accuracy"]
        checks.append(_at_most("accuracy.max_drop", base - measured, accuracy.max_drop, "points",
                               f"{measured:.2f}% vs baseline {base:.2f}%: the drop is"))
    return checks


def _size(budget: GateBudget, model_size_mb: float | None, params: int | None) -> list[CheckResult]:
    size = budget.size
    if size is None:
        return []
    checks = []
    for name, value, limit, unit in (("size.mb", model_size_mb, size.max_mb, "MB"), ("size.params", params, size.max_params, "params")):
        if limit is None:
            continue
        if value is None:
            raise InputError(f"the budget limits {name} but the model's size was not measured")
        checks.append(_at_most(name, float(value), float(limit), unit, "the ONNX model is"))
    return checks


def _parity(budget: GateBudget, parity: ParityResult | None) -> list[CheckResult]:
    if parity is None:
        if budget.parity is not None:
            raise InputError("the budget checks ONNX parity but there is no source model to compare with; "
                             "gate a model spec or checkpoint, or drop 'parity'")
        return []
    limits = budget.parity or ParityBudget(atol=parity.atol, min_top1_agreement=parity.min_top1_agreement)
    on = f"on {parity.samples} inputs"
    return [
        _at_most(
            "parity.max_abs_diff", parity.max_abs_diff, parity.tolerance_for(limits.atol), "",
            f"ONNX Runtime vs torch {on}: max |diff| (atol scaled by the largest |output| above 1)",
        ),
        _at_least("parity.top1_agreement", 100 * parity.top1_agreement, 100 * limits.min_top1_agreement, "%",
                  f"top-1 agreement {on}"),
    ]


def run_gate(
    budget: GateBudget,
    *,
    profile: Profile,
    baseline: Profile | None = None,
    metrics: dict | None = None,
    baseline_metrics: dict | None = None,
    model_size_mb: float | None = None,
    params: int | None = None,
    parity: ParityResult | None = None,
    batch: int | None = None,
) -> GateResult:
    """Every check the budget asks for, in a fixed order. Missing inputs a check needs are an InputError.

    ``batch`` picks the measurement to judge (default: the profile's first).
    """
    stability = _stability(budget, profile, batch)
    latency, comparison = _latency(budget, profile, baseline, batch, stability.status == "pass")
    checks = [
        *latency,
        *_accuracy(budget, metrics, baseline_metrics),
        *_size(budget, model_size_mb, params),
        *_parity(budget, parity),
        stability,
    ]
    return GateResult(checks, comparison)
