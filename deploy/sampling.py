"""Paired, interleaved sampling: the round is the replicate.

Every model taking part is loaded once; after a time-based warm-up of each, the models take turns
in **rounds**: in each round every model runs one **block** of back-to-back timed calls (at least
``block_s`` seconds and ``block_calls`` calls), in an order that reverses every round (A B, B A,
A B, … so neither model always runs first after the other). Samples inside a block share the
machine's state; what changes between profiles taken minutes apart (other processes, clocks,
caches) is what fools a verdict, and a round puts both models under nearly the same state. A ratio
question is judged on the per-round ratios of the blocks' statistics, an absolute one on the
per-round values (``spiralprune.deploy.verdict``).

Why blocks and not single calls in turn: ONNX Runtime's intra-op threads spin for a while after a
call, so a second session called right after the first competes with the first one's spinning
threads. Measured on the 2-core development machine (a ResNet of 1.36 ms alone, two sessions of
it, A/A): calls in turn gave a p50 of 3.0 ms and per-round ratios spread over 0.45 .. 2.24; blocks
of 0.1 s gave 1.34 ms and 0.97 .. 1.05, and decided in 10 rounds.

The evidence is looked at after ``min_rounds`` rounds and then each time the rounds have grown by
half (``LOOK_GROWTH``), each look at a stricter confidence (``look_confidence``) so that stopping
as soon as a question looks decided does not inflate the error rate. Sampling stops, after at
least ``min_rounds`` rounds and ``min_duration_s`` seconds:

- with questions: when every question is decided (``decided``);
- without: when the confidence interval of every model's round median is within ``±ci_rel`` of it
  (``ci_converged``; ``ci_rel = 0`` never stops early);
- in any case at ``max_duration_s`` (``max_duration``), when an undecided verdict stays undecided.

**A session can be continued** (``prior``): the models are loaded and warmed up again, and the new
rounds are added to the earlier session's, the looks counting on from its last one (look k + 1
follows look k, at the confidence ``look_confidence`` gives it). The error of every look of both
sessions together stays within ``1 - confidence``, so measuring longer a question the first session
left undecided does not buy a verdict the evidence does not give. The new session has its own
``max_duration_s``. The replicate is still the round: what changes between the two loads (the
machine's state, where the models sit in memory) touches both sides of each round's ratio, as
within one session.

**Rounds on a busy CPU are set aside.** When the machine has more runnable threads than cores,
a multi-threaded model's call waits for a CPU at every parallel section, and a larger model has
more of them: the slowdown is not a common factor that a ratio cancels. Measured on the 2-core
development machine with a 2-thread ONNX Runtime session beside another 2-thread process: the
session's threads waited 50 % of every round for a CPU (Linux ``schedstat``), the model ran at
3.9 ms instead of 0.99 ms, and a demo spiral measured at that load called a 4.5x model 12.6x
(interval 9.1x .. 17.2x). So the process's threads' run-queue wait is read around every round
(``cpu_times``, ``/proc/self/task/*/schedstat``), and a round whose threads waited more than
``max_cpu_wait`` of their time is left out of the evidence; the verdict says how many were. When
no round is left the verdict is ``undecided`` and says the machine is oversubscribed. Where the
kernel does not report it (not Linux) every round counts.

A layer profile (``spiralprune.deploy.layer_profile``) runs its profiled calls between rounds
(``between``); that time is left out of the stop rule's clock, so the judged rounds are the same
with or without it.

One model alone is sampled the same way (its blocks are its rounds), so ``spiralprune profile``, the
spiral's steps, ``spiralprune gate``, ``spiralprune compare`` and the device runner share this loop.
Numpy and the standard library only: this module ships to devices with the bundle.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable  # not collections.abc: the alias below is evaluated on Python 3.8 devices

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.stats import median_ci_rel
from spiralprune.deploy.verdict import Question, Verdict, judge, round_statistic


LOOK_GROWTH = 1.5


@dataclass(frozen=True)
class ProfileSettings:
    """How latency is measured: the one settings type of the profiler, run configs, gate budgets and targets."""

    warmup_s: float = 0.3
    # A block spans several scheduler time slices (a few ms each on Linux), so that on a loaded
    # machine a round's value is not decided by whether one slice happened to be lost.
    block_s: float = 0.1
    block_calls: int = 5
    min_rounds: int = 10
    min_duration_s: float = 0.5
    max_duration_s: float = 10.0
    ci_rel: float = 0.02
    confidence: float = 0.95
    # Marks a measurement unstable past this robust coefficient of variation (MAD / median);
    # instability is reported, it fails nothing by itself: the verdict's interval carries the noise.
    cv_threshold: float = 0.10
    # Time whole back-to-back ``infer`` calls by wall clock instead of the backend's own compute
    # timer (which on a GPU excludes host<->device copies).
    throughput: bool = False
    seed: int = 0
    # A round whose measuring threads waited more than this fraction of their time for a CPU is
    # set aside (see the module docstring); 1 keeps every round.
    max_cpu_wait: float = 0.2

    def __post_init__(self) -> None:
        if self.block_calls < 1 or self.min_rounds < 2:
            raise InputError("block_calls must be at least 1 and min_rounds at least 2")
        values = (self.warmup_s, self.block_s, self.min_duration_s, self.cv_threshold)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not self.ci_rel >= 0:
            raise InputError("warmup_s, block_s, min_duration_s, ci_rel and cv_threshold must not be negative")
        if not math.isfinite(self.max_duration_s) or self.max_duration_s <= 0 or self.max_duration_s < self.min_duration_s:
            raise InputError("max_duration_s must be positive and at least min_duration_s")
        if not 0.5 <= self.confidence < 1:
            raise InputError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0 < self.max_cpu_wait <= 1:
            raise InputError(f"max_cpu_wait must be in (0, 1], got {self.max_cpu_wait}")


# What the sampler needs of a model: one call that runs it once and returns the seconds it took.
Timed = Callable[[], float]
# Nanoseconds this process's threads have run and have waited for a CPU so far, or None when unknown.
CpuTimes = Callable[[], "tuple[int, int] | None"]


def cpu_times() -> tuple[int, int] | None:
    """(run ns, run-queue wait ns) summed over this process's threads (Linux schedstat), or None."""
    run = wait = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                fields = f.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return (run, wait) if run else None


def wait_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the threads' time between two readings spent waiting for a CPU."""
    if before is None or after is None:
        return None
    run, wait = after[0] - before[0], after[1] - before[1]
    return wait / (run + wait) if run + wait > 0 else None


def free_rounds(cpu_wait: Sequence[float | None], max_cpu_wait: float) -> np.ndarray:
    """Which rounds count (see the module docstring): those whose threads waited for a CPU at most
    ``max_cpu_wait`` of their time, and those whose wait is unknown."""
    return np.array([w is None or w <= max_cpu_wait for w in cpu_wait], dtype=bool)


@dataclass
class Series:
    """One model's samples, by round."""

    warmup_iterations: int = 0
    warmup_s: float = 0.0
    blocks: list[list[float]] = field(default_factory=list)

    @property
    def samples_ms(self) -> list[float]:
        return [s for block in self.blocks for s in block]

    def rounds(self, statistic: str) -> np.ndarray:
        return np.array([round_statistic(b, statistic) for b in self.blocks])


@dataclass
class Rounds:
    """The result of one paired session: every model's series, why it stopped, and the verdicts."""

    series: dict[str, Series]
    stop_reason: str
    wall_s: float
    verdicts: list[Verdict]
    cpu_wait: list[float | None] = field(default_factory=list)  # per round; None where unknown
    max_cpu_wait: float = 1.0
    looks: int = 0  # how many times the evidence was looked at (the last look decided ``verdicts``)

    def verdict(self, name: str) -> Verdict:
        for v in self.verdicts:
            if v.question.name == name:
                return v
        raise KeyError(name)

    def clean(self) -> np.ndarray:
        """Which rounds count (``free_rounds``)."""
        return free_rounds(self.cpu_wait, self.max_cpu_wait)

    def values(self, question: Question) -> np.ndarray:
        """The question's per-round values over the rounds that count."""
        values = evidence(self.series, question)
        return values[self.clean()[: len(values)]]

    def judge(self, question: Question, confidence: float) -> Verdict:
        values = self.values(question)
        return judge(question, values, confidence, set_aside=len(self.cpu_wait) - int(self.clean().sum()))


def evidence(series: Mapping[str, Series], question: Question) -> np.ndarray:
    """Per-round values of the question: subject/reference ratios, or the subject's ms."""
    subject = series[question.subject].rounds(question.statistic)
    if question.reference is None:
        return subject
    reference = series[question.reference].rounds(question.statistic)
    n = min(len(subject), len(reference))
    return subject[:n] / reference[:n]


def sample_rounds(
    models: Mapping[str, Timed], settings: ProfileSettings, questions: Sequence[Question] = (),
    clock: Callable[[], float] = time.perf_counter, cpu: CpuTimes = cpu_times,
    between: Callable[[dict[str, list[float]]], None] | None = None, prior: Rounds | None = None,
) -> Rounds:
    """Warm every model up, then run rounds until the stop rule of the module docstring holds.

    ``cpu`` reads the threads' run and wait times around every round (see the module docstring);
    ``between`` gets each round's blocks (model -> ms) after the round, off the stop rule's clock;
    ``prior``: an earlier session of the same models, continued (the module docstring): the result
    holds its rounds and this session's, its ``wall_s`` both sessions' time."""
    if not models:
        raise InputError("nothing to measure")
    if prior is not None and set(prior.series) != set(models):
        raise InputError(f"a continued session measures the models of the first ({', '.join(prior.series)}), "
                         f"not {', '.join(models)}")
    for q in questions:
        for name in (q.subject, q.reference):
            if name is not None and name not in models:
                raise InputError(f"question '{q.name}' names model '{name}', which is not measured")
    if prior is None:
        series = {name: Series() for name in models}
    else:  # copies (the first session's record stays as it was), in its order, which goes on alternating
        series = {name: Series(s.warmup_iterations, s.warmup_s, list(s.blocks)) for name, s in prior.series.items()}
    names = list(series)
    for name in names:  # the first call may compile, allocate or autotune: the timed warm-up follows it
        start = clock()
        models[name]()
        calls = 1
        steady = clock()
        while clock() - steady < settings.warmup_s:
            models[name]()
            calls += 1
        series[name].warmup_iterations += calls
        series[name].warmup_s += clock() - start

    start = clock()
    paused = 0.0
    rounds = Rounds(series, "", 0.0, [], [] if prior is None else list(prior.cpu_wait), settings.max_cpu_wait)
    looks, next_look = 0, settings.min_rounds
    if prior is not None:
        done = len(series[names[0]].blocks)
        looks, next_look = prior.looks, max(done + 1, math.ceil(LOOK_GROWTH * done))
    while True:
        order = names if len(series[names[0]].blocks) % 2 == 0 else names[::-1]
        before = cpu()
        blocks = _round(models, order, settings, clock)
        for name, block in blocks.items():
            series[name].blocks.append(block)
        rounds.cpu_wait.append(wait_fraction(before, cpu()))
        if between is not None:
            pause = clock()
            between(blocks)
            paused += clock() - pause
        elapsed = clock() - start - paused
        done = len(series[names[0]].blocks)
        capped = elapsed >= settings.max_duration_s
        if not capped and (done < next_look or elapsed < settings.min_duration_s):
            continue
        looks += 1
        next_look = max(done + 1, math.ceil(LOOK_GROWTH * done))
        confidence = look_confidence(settings.confidence, looks)
        verdicts = [rounds.judge(q, confidence) for q in questions]
        if capped:
            reason = "max_duration"
            break
        if questions and all(v.outcome != "undecided" for v in verdicts):
            reason = "decided"
            break
        if not questions and settings.ci_rel > 0 and all(
            median_ci_rel(s.rounds("p50")) <= settings.ci_rel for s in series.values()
        ):
            reason = "ci_converged"
            break
    rounds.stop_reason, rounds.verdicts, rounds.looks = reason, verdicts, looks
    rounds.wall_s = clock() - start + (0.0 if prior is None else prior.wall_s)
    return rounds


def look_confidence(confidence: float, look: int) -> float:
    """The confidence of the ``look``-th look at the evidence (1-based), so that all looks together
    keep the error rate of ``confidence``: look k may err with (1 - confidence) x 6 / (pi^2 k^2),
    which sums to 1 - confidence over every look. Without it, a model exactly at its limit would
    be decided by whichever side the interval happened to wander to first."""
    return 1 - (1 - confidence) * 6 / (math.pi**2 * look**2)


def _round(
    models: Mapping[str, Timed], order: Sequence[str], settings: ProfileSettings, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """One round: each model of ``order`` runs its block of back-to-back calls, in turn."""
    blocks: dict[str, list[float]] = {}
    for name in order:
        samples: list[float] = []
        start = clock()
        while len(samples) < settings.block_calls or clock() - start < settings.block_s:
            samples.append(1e3 * models[name]())
        blocks[name] = samples
    return blocks
