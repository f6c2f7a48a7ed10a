"""A run's final budget and how the judge's paired verdicts answer it.

The budget comes from the teacher measured when the run started: a speedup over it and/or an
absolute latency (``max_ms``, or ``min_throughput`` items per second at the run's batch), each asked
of every candidate measured in rounds beside the teacher (``spiralprune.deploy.verdict``), and a limit on
the task's quality metric (a floor, or a ceiling for a lower-is-better metric).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spiralprune.deploy.budget import LatencyBudget
from spiralprune.deploy.profiler import Paired
from spiralprune.deploy.verdict import Outcome, Question, interval, percent
from spiralprune.pipeline.acceptance import QualityLimit, format_value
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.passes.record import LedgerEntry
from spiralprune.pipeline.tasks import Metric, Task


@dataclass(frozen=True)
class FinalBudget:
    """The run's ``budget:`` (``spiralprune.deploy.budget.Budget``) made concrete by its teacher: its ``latency``
    (a speedup over the teacher and/or an absolute latency or throughput at the run's ``batch``), and a quality
    limit: ``metric`` at least ``quality_limit`` (at most, lower-is-better), in shown units.

    Every latency limit is a question to the judge (``spiralprune.deploy.verdict``), asked of every candidate
    measured in rounds beside the teacher (``final_questions``). ``final_ms`` is only the planning figure the
    schedule and the predictor aim at, from the teacher measured alone when the run started.
    """

    latency: LatencyBudget
    teacher_ms: float
    batch: int
    metric: Metric
    teacher_quality: float
    quality_limit: float
    teacher_metrics: dict  # every metric of the teacher, as measured: what the quality rules' max_drop compares with

    @classmethod
    def of_teacher(cls, config: RunConfig, teacher: dict, task: Task) -> FinalBudget:
        """``config``'s ``budget:`` made concrete by the teacher's measured summary; a throughput budget
        counts the items of the run's batch (``input_shape[0]``)."""
        quality, latency = config.budget.quality, config.budget.latency
        metric = task.quality(quality.name)
        measured = metric.shown(teacher["metrics"], "the budget", "teacher")
        drop = quality.max_drop
        sign = 1 if metric.higher_is_better else -1
        limits = [v for v in (quality.min if metric.higher_is_better else quality.max,
                              measured - sign * drop if drop is not None else None) if v is not None]
        limit = max(limits) if metric.higher_is_better else min(limits)
        return cls(latency, teacher["statistic_ms"], config.input_shape[0], metric, measured, limit, teacher["metrics"])

    def quality_rule(self) -> QualityLimit:
        """The run's quality limit as an acceptance rule (``spiralprune.pipeline.acceptance``)."""
        bound = "floor" if self.metric.higher_is_better else "ceiling"
        return QualityLimit(self.quality_limit, self.metric, name=f"{self.metric.name}.{bound}", label=bound)

    @property
    def throughput_ms(self) -> float | None:
        """The latency limit ``min_throughput`` sets on one call of the run's batch."""
        return None if self.latency.min_throughput is None else 1000 * self.batch / self.latency.min_throughput

    @property
    def final_ms(self) -> float:
        latency = self.latency
        speedup_ms = self.teacher_ms / latency.min_speedup if latency.min_speedup else None
        return min(v for v in (latency.max_ms, speedup_ms, self.throughput_ms) if v)

    def try_questions(self, goal_ms: float, current: str, current_ms: float) -> TryQuestions:
        """What a try aiming at ``goal_ms`` asks of its candidate, measured beside ``current`` (at
        ``current_ms`` when the step started) and the teacher: the step budget and the final questions."""
        step = Question("step budget", "candidate", goal_ms / current_ms, current, self.latency.statistic)
        return TryQuestions(step, tuple(self.final_questions()), final_step=goal_ms <= self.final_ms)

    def final_questions(self, subject: str = "candidate") -> list[Question]:
        """The run's latency limits as the judge's questions about ``subject`` (the INT8 pass asks them of its
        model), the speedup against the teacher: the gate's and compare's questions
        (``LatencyBudget.questions``), named ``final max_ms``, ``final min_throughput``, ``final min_speedup``."""
        return self.latency.questions(self.batch, subject, "teacher", prefix="final ")

    def describe(self) -> str:
        latency, parts = self.latency, []
        if latency.min_speedup is not None:
            parts.append(f"{latency.statistic} speedup >= {latency.min_speedup:.2f}x over the teacher, measured paired")
        if latency.max_ms is not None:
            parts.append(f"{latency.statistic} <= {latency.max_ms:.3f} ms (upper confidence bound)")
        if self.throughput_ms is not None:
            parts.append(f"throughput >= {latency.min_throughput:g} items/s at batch {self.batch}: "
                         f"{latency.statistic} <= {self.throughput_ms:.3f} ms (upper confidence bound)")
        m = self.metric
        return " and ".join(parts) + (f", {m.name} {'>=' if m.higher_is_better else '<='} "
                                      f"{format_value(self.quality_limit, m.unit)} (teacher "
                                      f"{format_value(self.teacher_quality, m.unit)})")

    def to_dict(self) -> dict:
        """The report's ``budget``: the latency limits flat beside the teacher's figures, as reports read them."""
        flat = {k: v for k, v in self.__dict__.items() if k != "latency"}
        limits = self.latency.model_dump(include={"statistic", "min_speedup", "max_ms", "min_throughput"})
        return {**limits, **flat, "metric": dataclasses.asdict(self.metric), "final_ms": self.final_ms,
                "final": self.describe()}


@dataclass(frozen=True)
class TryQuestions:
    """What one try asks the judge, fixed before it measures (``FinalBudget.try_questions``): the ``step``
    budget (the candidate against the current model) and the run's ``finals``; ``final_step``: the try
    aims at the final budget. Every question is measured and recorded (``asked``); ``judged`` decide."""

    step: Question
    finals: tuple[Question, ...]
    final_step: bool

    @property
    def asked(self) -> list[Question]:
        return [self.step, *self.finals]

    @property
    def judged(self) -> list[Question]:
        """The questions that decide the try's latency: the step budget or, on a step aiming at the final
        budget, every final question.

        There the step budget is the final budget in the teacher's planning figure (measured alone when
        the run started) over the current model's; the final questions ask the same of the teacher
        measured in the same rounds, so they decide, and a stale planning figure cannot reject a plan
        the judge finds meets the final budget (ResNet at 4x, 2026-12-03: 4.07x over the teacher,
        rejected on the step question)."""
        return list(self.finals) if self.final_step else [self.step]

    def outcome(self, paired: Paired) -> Outcome:
        """The judge on the ``judged`` questions together: ``misses`` when one misses, ``meets`` when all
        meet, else ``undecided``."""
        outcomes = {paired.verdict(q.name).outcome for q in self.judged}
        return "misses" if "misses" in outcomes else "undecided" if "undecided" in outcomes else "meets"

    def meets_final(self, paired: Paired) -> bool:
        """The judge grants every final question: the candidate meets the run's budget in latency."""
        return all(paired.verdict(q.name).meets for q in self.finals)


def paired_speedup(paired: Paired, statistic: str, subject: str = "candidate") -> dict:
    """``subject``'s speedup over the teacher: the median of the per-round ratios, with its interval."""
    ratios = paired.rounds.values(Question("speedup", subject, 1.0, "teacher", statistic))
    if len(ratios) == 0:  # every round was set aside (an oversubscribed machine): no estimate
        return {"speedup": float("nan"), "speedup_ci": [float("nan"), float("nan")]}
    estimate, low, high = interval(ratios, paired.rounds.verdicts[0].confidence)
    return {"speedup": 1 / estimate, "speedup_ci": [1 / high, 1 / low]}


def final_summary(entry: LedgerEntry, metric: Metric) -> str:
    """``speedup 4.12x (95% CI 4.01x .. 4.20x) over the teacher, p50 0.934 ms`` of an accepted step."""
    low, high = entry.speedup_ci
    confidence = entry.verdicts[0]["confidence"]
    return (
        f"speedup {entry.speedup:.2f}x ({percent(confidence)} CI {low:.2f}x .. {high:.2f}x) over the teacher, "
        f"measured paired; {entry.statistic_ms:.3f} ms, {quality_text(entry, metric)}"
    )


def quality_text(entry: LedgerEntry, metric: Metric) -> str:
    """``accuracy 97.12%`` / ``miou 61.30%`` of a ledger line, its task's metric as shown."""
    return f"{metric.name} {format_value(metric.scale * entry.metrics.get(metric.name, entry.quality), metric.unit)}"
