"""A run's final budget and how the judge's paired verdicts answer it.

The budget comes from the teacher measured when the run started: a speedup over it and/or an
absolute latency (``max_ms``, or ``min_throughput`` items per second at the run's batch), each asked
of every candidate measured in rounds beside the teacher (``spiral.deploy.verdict``), and an
accuracy floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from spiral.deploy.profiler import Paired
from spiral.deploy.verdict import Question, interval, percent
from spiral.pipeline.config import BudgetConfig
from spiral.pipeline.ledger import LedgerEntry


@dataclass(frozen=True)
class Budget:
    """The final budget: a speedup over the teacher and/or an absolute latency (or throughput), and an
    accuracy floor.

    Every latency part is a question to the judge (``spiral.deploy.verdict``), asked of every candidate
    measured in rounds beside the teacher. ``final_ms`` is only the planning figure the schedule
    and the predictor aim at, from the teacher measured alone when the run started.
    """

    statistic: str
    teacher_ms: float
    min_speedup: float | None
    max_ms: float | None
    min_throughput: float | None
    batch: int
    teacher_accuracy: float
    accuracy_floor: float

    @classmethod
    def of_teacher(cls, config: BudgetConfig, teacher: dict, batch: int) -> Budget:
        """``config`` (the run's ``budget:``) made concrete by the teacher's measured summary; ``batch``
        is the run's (``input_shape[0]``), what a throughput budget counts items of."""
        accuracy = 100 * teacher["accuracy"]
        drop = config.accuracy.max_drop
        floors = [v for v in (config.accuracy.min, accuracy - drop if drop is not None else None) if v is not None]
        return cls(config.statistic, teacher["statistic_ms"], config.min_speedup, config.max_ms, config.min_throughput,
                   batch, accuracy, max(floors))

    @property
    def throughput_ms(self) -> float | None:
        """The latency limit ``min_throughput`` sets on one call of the run's batch."""
        return None if self.min_throughput is None else 1000 * self.batch / self.min_throughput

    @property
    def final_ms(self) -> float:
        speedup_ms = self.teacher_ms / self.min_speedup if self.min_speedup else None
        return min(v for v in (self.max_ms, speedup_ms, self.throughput_ms) if v)

    def final_questions(self) -> list[Question]:
        questions = []
        if self.min_speedup is not None:
            questions.append(Question("final speedup", "candidate", 1 / self.min_speedup, "teacher", self.statistic))
        if self.max_ms is not None:
            questions.append(Question("final max_ms", "candidate", self.max_ms, None, self.statistic))
        if self.throughput_ms is not None:
            questions.append(Question("final min_throughput", "candidate", self.throughput_ms, None, self.statistic))
        return questions

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(f"{self.statistic} speedup >= {self.min_speedup:.2f}x over the teacher, measured paired")
        if self.max_ms is not None:
            parts.append(f"{self.statistic} <= {self.max_ms:.3f} ms (upper confidence bound)")
        if self.throughput_ms is not None:
            parts.append(f"throughput >= {self.min_throughput:g} items/s at batch {self.batch}: {self.statistic} <= "
                         f"{self.throughput_ms:.3f} ms (upper confidence bound)")
        return " and ".join(parts) + f", accuracy >= {self.accuracy_floor:.2f}% (teacher {self.teacher_accuracy:.2f}%)"

    def to_dict(self) -> dict:
        return {**self.__dict__, "final_ms": self.final_ms, "final": self.describe()}


def judged_questions(step: Question, questions: list[Question], final_step: bool) -> list[Question]:
    """The questions that decide a try's latency: the step budget or, on a step aiming at the final
    budget, every final question.

    There the step budget is the final budget in the teacher's planning figure (measured alone when
    the run started) over the current model's; the final questions ask the same of the teacher
    measured in the same rounds, so they decide, and a stale planning figure cannot reject a plan
    the judge finds meets the final budget (ResNet at 4x, 2026-12-03: 4.07x over the teacher,
    rejected on the step question)."""
    return [q for q in questions if q.name != step.name] if final_step else [step]


def latency_met(paired: Paired, step: Question, questions: list[Question], final_step: bool) -> bool:
    """The judge grants every question that decides (``judged_questions``)."""
    return all(paired.verdict(q.name).meets for q in judged_questions(step, questions, final_step))


def paired_speedup(paired: Paired, statistic: str, subject: str = "candidate") -> dict:
    """``subject``'s speedup over the teacher: the median of the per-round ratios, with its interval."""
    ratios = paired.rounds.values(Question("speedup", subject, 1.0, "teacher", statistic))
    if len(ratios) == 0:  # every round was set aside (an oversubscribed machine): no estimate
        return {"speedup": float("nan"), "speedup_ci": [float("nan"), float("nan")]}
    estimate, low, high = interval(ratios, paired.rounds.verdicts[0].confidence)
    return {"speedup": 1 / estimate, "speedup_ci": [1 / high, 1 / low]}


def final_summary(entry: LedgerEntry) -> str:
    """``speedup 4.12x (95% CI 4.01x .. 4.20x) over the teacher, p50 0.934 ms`` of an accepted step."""
    low, high = entry.speedup_ci
    confidence = entry.verdicts[0]["confidence"]
    return (
        f"speedup {entry.speedup:.2f}x ({percent(confidence)} CI {low:.2f}x .. {high:.2f}x) over the teacher, "
        f"measured paired; {entry.statistic_ms:.3f} ms, accuracy {100 * entry.accuracy:.2f}%"
    )
