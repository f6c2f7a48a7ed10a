"""The gate's checks: each budget entry against what was measured, with the margin to the budget.

The margin is signed so that a positive value is headroom and a negative one the amount by
which the budget was missed, whichever way the budget points (a maximum or a minimum).
Latency checks are verdicts of ``spiral.deploy.verdict``: the margin is measured from the far end of
the confidence interval, and an ``undecided`` verdict is ``inconclusive``, which never passes.
How noisy the measurement was is reported (robust cv); it fails nothing by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from spiral.deploy.errors import InputError
from spiral.deploy.profiler import Profile
from spiral.deploy.stats import robust_cv
from spiral.deploy.verdict import Question, Verdict, judge
from spiral.pipeline.compare.profiles import KIND_LABELS, judge_runs, require_same_target, rounds_of
from spiral.pipeline.exit_codes import ExitCode, judged
from spiral.pipeline.export import ParityResult
from spiral.pipeline.config import ParityConfig
from spiral.pipeline.gate.budget import GateBudget

# The names the paired session gives the two models.
CANDIDATE, BASELINE = "candidate", "baseline"
_STATUS = {"meets": "pass", "misses": "fail", "undecided": "inconclusive"}

Status = Literal["pass", "fail", "inconclusive"]

_FORMATS = {
    "ms": "{:.3f} ms",
    "%": "{:.2f}%",
    "points": "{:.2f} points",
    "MB": "{:.3f} MB",
    "params": "{:,.0f} params",
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
    # How the baseline was measured ("paired in this job", "stored baseline from another run"), if compared.
    comparison: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    # What was measured, for information: rounds and robust cv (noise fails nothing by itself).
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status == "pass" for c in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        """A failed check is a verdict against the release; an inconclusive one, with none failed, is undecided."""
        statuses = {check.status for check in self.checks}
        return judged(against="fail" in statuses, undecided="inconclusive" in statuses)

    @property
    def problems(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status != "pass"]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "checks": [c.to_dict() for c in self.checks],
            "comparison": self.comparison,
            "latency_verdicts": [v.to_dict() for v in self.verdicts],
            "notes": self.notes,
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


def latency_questions(budget: GateBudget, baseline_measured: bool) -> list[Question]:
    """The latency questions of the budget, named by their check, about the models ``candidate`` and
    (when the baseline model is measured beside it) ``baseline``."""
    latency = budget.latency
    if latency is None:
        return []
    questions = []
    if latency.max_ms is not None:
        questions.append(_max_ms_question(budget))
    if latency.max_regression_pct is not None and baseline_measured:
        questions.append(_regression_question(budget))
    return questions


def _max_ms_question(budget: GateBudget) -> Question:
    latency = budget.latency
    assert latency is not None and latency.max_ms is not None
    return Question(f"latency.{latency.statistic}.max_ms", CANDIDATE, latency.max_ms, statistic=latency.statistic)


def _regression_question(budget: GateBudget) -> Question:
    latency = budget.latency
    assert latency is not None and latency.max_regression_pct is not None
    return Question(f"latency.{latency.statistic}.regression", CANDIDATE, 1 + latency.max_regression_pct / 100,
                    reference=BASELINE, statistic=latency.statistic)


def _verdict_check(v: Verdict, unit: str, note: str = "") -> CheckResult:
    """A latency verdict as a check; the margin runs from the interval's far end to the limit."""
    if unit == "%":
        measured, limit, high = 100 * (v.estimate - 1), 100 * (v.question.limit - 1), 100 * (v.high - 1)
    else:
        measured, limit, high = v.estimate, v.question.limit, v.high
    message = f"{note}: {v.message()}" if note else v.message()
    return CheckResult(v.question.name, _STATUS[v.outcome], measured, limit, limit - high, unit, message)  # type: ignore[arg-type]


def _latency(
    budget: GateBudget, profile: Profile, baseline: Profile | None, paired: bool, verdicts: Mapping[str, Verdict],
    batch: int | None,
) -> tuple[list[CheckResult], list[Verdict], str | None]:
    latency = budget.latency
    if latency is None:
        return [], [], None
    confidence = budget.profile.confidence
    statistic = latency.statistic
    m = profile.measurement(batch)
    checks, judged, comparison = [], [], None
    if latency.max_ms is not None:
        question = _max_ms_question(budget)
        v = verdicts.get(question.name) or judge(question, rounds_of(m, statistic, "the candidate's profile"),
                                                 confidence)
        checks.append(_verdict_check(v, "ms"))
        judged.append(v)
    if latency.max_regression_pct is not None:
        question = _regression_question(budget)
        if baseline is None:
            raise InputError("the budget limits the regression against a baseline (latency.max_regression_pct); "
                             "pass --baseline-model (or a stored --baseline)")
        if paired:
            if question.name not in verdicts:
                raise InputError("the baseline was measured beside the candidate but its verdict is missing")
            v, comparison = verdicts[question.name], KIND_LABELS["paired"]
        else:
            require_same_target(baseline, profile, "the stored baseline",
                                "re-measure the released model beside the candidate with --baseline-model")
            base_rounds = rounds_of(baseline.measurement(m.batch), statistic, "the stored baseline")
            v = judge_runs(question, rounds_of(m, statistic, "the candidate's profile"), base_rounds, confidence,
                           latency.between_run_tolerance)
            comparison = KIND_LABELS["runs"]
        note = comparison
        if v.outcome == "undecided" and not paired:
            note += (f" (interval widened by ±{latency.between_run_tolerance:.0%}; re-measure the released model "
                     "beside the candidate with --baseline-model to settle it)")
        checks.append(_verdict_check(v, "%", note))
        judged.append(v)
    return checks, judged, comparison


def measurement_note(name: str, profile: Profile, batch: int | None = None) -> str:
    """``candidate: p50 1.234 ms at batch 1, 12 rounds, 960 calls, robust cv 3.1% (stable; …)``."""
    m = profile.measurement(batch)
    cv = m.stats.get("robust_cv", robust_cv(m.samples_ms))
    rounds = f"{len(m.round_sizes)} rounds, " if m.round_sizes else ""
    return (f"{name}: p50 {m.stats['p50']:.3f} ms at batch {m.batch}, {rounds}{len(m.samples_ms)} calls, "
            f"robust cv {cv:.1%} ({'stable' if m.stable else 'unstable'}; noise fails nothing by itself), "
            f"stopped by {m.stop_reason}")


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
                "pass --baseline-model with --data, or a gate or run report as --baseline"
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
    limits = budget.parity or ParityConfig(atol=parity.atol, min_top1_agreement=parity.min_top1_agreement)
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
    paired: bool = False,
    verdicts: Mapping[str, Verdict] | None = None,
    metrics: dict | None = None,
    baseline_metrics: dict | None = None,
    model_size_mb: float | None = None,
    params: int | None = None,
    parity: ParityResult | None = None,
    batch: int | None = None,
) -> GateResult:
    """Every check the budget asks for, in a fixed order. Missing inputs a check needs are an InputError.

    ``verdicts`` are those the paired session reached while sampling (``latency_questions``); a
    latency question without one is judged here on the profile's rounds. ``paired`` says that
    ``baseline`` was measured in the same rounds as ``profile``; otherwise it is a stored profile
    from another run. ``batch`` picks the measurement to judge (default: the profile's first).
    """
    latency, judged, comparison = _latency(budget, profile, baseline, paired, verdicts or {}, batch)
    checks = [
        *latency,
        *_accuracy(budget, metrics, baseline_metrics),
        *_size(budget, model_size_mb, params),
        *_parity(budget, parity),
    ]
    notes = [measurement_note(CANDIDATE, profile, batch)]
    if baseline is not None and comparison is not None:
        notes.append(measurement_note(BASELINE, baseline, profile.measurement(batch).batch))
    return GateResult(checks, comparison, judged, notes)
