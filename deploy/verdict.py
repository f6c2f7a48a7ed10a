"""The one judge of every latency verdict: ``meets``, ``misses`` or ``undecided``.

A question asks whether a model's latency statistic is at most a limit:

- a **ratio question** (``reference`` given): is ``statistic(subject) / statistic(reference)`` at
  most ``limit``? The step budget (candidate vs current model), the final speedup (candidate vs
  teacher, ``limit = 1 / min_speedup``) and a release regression (``limit = 1 + max_regression``)
  are ratio questions. The evidence is the per-round ratios of a paired, interleaved measurement
  (``spiralprune.deploy.sampling``): both models ran in the same round, so whatever the machine did in that
  round (another process, a clock change) touches both sides.
- an **absolute question** (no reference): is ``statistic(subject)`` at most ``limit`` ms? The
  evidence is the per-round values of the subject.

The estimate is the median of the per-round values; its confidence interval is distribution-free
(order statistics of the median, ``spiralprune.deploy.stats.median_ci``), so rare 10x outliers move it by a
rank, not by their size. The judge compares the *interval* with the limit: entirely at or below
is ``meets``, entirely above is ``misses``, straddling is ``undecided``. Noise matters only when it
makes the decision uncertain: a model 100x under its budget meets it however noisy the machine.

Numpy only: this module ships to devices with the bundle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.stats import median_ci

Outcome = Literal["meets", "misses", "undecided"]
STATISTICS = ("p50", "p90", "p95", "p99", "mean")


def round_statistic(samples_ms: Sequence[float], statistic: str) -> float:
    """One round's value of ``statistic`` (``p50`` … ``p99``, ``mean``) over its block of samples."""
    if statistic == "mean":
        return float(np.mean(samples_ms))
    if statistic not in STATISTICS:
        raise InputError(f"unknown latency statistic '{statistic}'; known: {', '.join(STATISTICS)}")
    return float(np.percentile(samples_ms, float(statistic[1:])))


@dataclass(frozen=True)
class Question:
    """Is ``statistic(subject)`` at most ``limit`` times ``statistic(reference)`` (or ``limit`` ms without one)?"""

    name: str
    subject: str
    limit: float
    reference: str | None = None
    statistic: str = "p50"

    def __post_init__(self) -> None:
        if not math.isfinite(self.limit) or self.limit <= 0:
            raise InputError(f"the limit of '{self.name}' must be a finite number > 0, got {self.limit}")
        if self.statistic not in STATISTICS:
            raise InputError(f"unknown latency statistic '{self.statistic}'; known: {', '.join(STATISTICS)}")

    @property
    def is_ratio(self) -> bool:
        return self.reference is not None

    def describe_limit(self) -> str:
        if self.is_ratio:
            return f"{self.statistic}({self.subject}) <= {self.limit:.4g} x {self.statistic}({self.reference})"
        return f"{self.statistic}({self.subject}) <= {self.limit:.4g} ms"


@dataclass(frozen=True)
class Verdict:
    question: Question
    outcome: Outcome
    estimate: float
    low: float
    high: float
    rounds: int
    confidence: float
    # Rounds left out of the evidence because the measuring threads waited for a CPU (``spiralprune.deploy.sampling``).
    set_aside: int = 0

    @property
    def meets(self) -> bool:
        return self.outcome == "meets"

    def message(self) -> str:
        """One line: the estimate, its interval, the limit, and what would settle an undecided verdict."""
        q = self.question
        unit = "x" if q.is_ratio else " ms"
        if self.rounds == 0:
            return (f"{q.name}: undecided (no round ran on a free CPU: in all {self.set_aside} rounds the measuring "
                    "threads waited for a CPU past max_cpu_wait; the machine is oversubscribed: measure with fewer "
                    "threads or on a quieter runner)")
        unbounded = math.isinf(self.high - self.low)  # too few rounds for an interval at this confidence
        if unbounded:
            spread = f"too few rounds ({self.rounds}) for a {percent(self.confidence)} interval"
        else:
            spread = f"{percent(self.confidence)} CI {self.low:.4g} .. {self.high:.4g}{unit} over {self.rounds} rounds"
        text = f"{q.name}: {self.outcome} ({q.statistic} {self.estimate:.4g}{unit}, {spread}; limit {q.limit:.4g}{unit})"
        if unbounded:
            text += "; more rounds on a free CPU (max_duration_s, a quieter machine) would settle it"
        elif self.outcome == "undecided":
            text += (
                f"; the interval straddles the limit by {self.limit_distance():.1%} of it: "
                "more rounds (max_duration_s) or a quieter machine would settle it"
            )
        if self.set_aside:
            rounds = "round" if self.set_aside == 1 else "rounds"
            text += f"; {self.set_aside} {rounds} set aside: the measuring threads waited for a CPU past max_cpu_wait"
        return text

    def limit_distance(self) -> float:
        """How far the interval's nearer end is from the limit, relative to the limit (0 when decided)."""
        if self.outcome != "undecided":
            return 0.0
        return min(self.question.limit - self.low, self.high - self.question.limit) / self.question.limit

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message()}

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        fields = {k: v for k, v in data.items() if k != "message"}
        return cls(**{**fields, "question": Question(**fields["question"])})


def percent(confidence: float) -> str:
    """``99.4%``: a confidence as it is printed (look-adjusted confidences sit just under 100 %)."""
    return f"{100 * confidence:.3g}%"


def z_for(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """Median of ``values`` and its distribution-free ``confidence`` interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise InputError("no rounds to judge")
    low, high = median_ci(x, z_for(confidence))
    return float(np.median(x)), low, high


def decide(low: float, high: float, limit: float) -> Outcome:
    if high <= limit:
        return "meets"
    if low > limit:
        return "misses"
    return "undecided"


def judge(question: Question, values: Sequence[float], confidence: float, set_aside: int = 0) -> Verdict:
    """The verdict on ``question`` from its per-round values (ratios for a ratio question, ms otherwise);
    ``set_aside`` rounds were left out of them (none left: undecided)."""
    if len(values) == 0:
        nan = float("nan")
        return Verdict(question, "undecided", nan, nan, nan, 0, confidence, set_aside)
    estimate, low, high = interval(values, confidence)
    return Verdict(question, decide(low, high, question.limit), estimate, low, high, len(values), confidence,
                   set_aside)


def widened(verdict: Verdict, tolerance: float) -> Verdict:
    """The verdict with its interval widened by ``tolerance`` (relative) on each side and judged again.

    For evidence that does not share the machine's state: two profiles from separate runs, or a
    stored baseline measured on another day, differ by what moved between the runs (measured here:
    up to ±7 % for one model profiled twice back to back), which no within-run interval contains.
    """
    low, high = verdict.low * (1 - tolerance), verdict.high * (1 + tolerance)
    return Verdict(verdict.question, decide(low, high, verdict.question.limit), verdict.estimate, low, high,
                   verdict.rounds, verdict.confidence, verdict.set_aside)


def judge_runs(question: Question, subject_rounds: list[float], reference_rounds: list[float],
               confidence: float, tolerance: float) -> Verdict:
    """The ratio question from two separate runs of the subject and the reference.

    Each side's per-round median gets its own interval (at ``1 - (1 - c) / 2``, so both hold
    together with confidence at least ``c``); the ratio's interval runs from the low end of one
    over the high end of the other, and is then ``widened`` by ``tolerance``.
    """
    each = 1 - (1 - confidence) / 2
    subject, s_low, s_high = interval(subject_rounds, each)
    reference, r_low, r_high = interval(reference_rounds, each)
    low, high = s_low / r_high, s_high / r_low
    verdict = Verdict(question, decide(low, high, question.limit), subject / reference, low, high,
                      min(len(subject_rounds), len(reference_rounds)), confidence)
    return widened(verdict, tolerance)
