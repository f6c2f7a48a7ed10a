"""The gate's checks: a release budget compiled to rules and decided by ``spiralprune.pipeline.acceptance``.

Latency verdicts come from the paired session, or are judged here on the candidate's rounds or
against a stored baseline's. How noisy the measurement was is reported (robust cv); it fails
nothing by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spiralprune.core.errors import InputError
from spiralprune.deploy.profiler import Profile
from spiralprune.deploy.stats import robust_cv
from spiralprune.deploy.verdict import Question, Verdict, judge
from spiralprune.pipeline.acceptance import Check, Evidence, Latency, budget_rules, decide
from spiralprune.pipeline.compare.profiles import KIND_LABELS, judge_runs, require_same_target, rounds_of
from spiralprune.pipeline.exit_codes import ExitCode, judged
from spiralprune.pipeline.export import ParityResult
from spiralprune.pipeline.gate.budget import GateBudget
from spiralprune.pipeline.report.attribution import change_headline

if TYPE_CHECKING:  # an annotation: reading a file with onnx is its caller's
    from spiralprune.deploy.model_file import ModelFile

# The names the paired session gives the two models.
CANDIDATE, BASELINE = "candidate", "baseline"


@dataclass
class GateResult:
    checks: list[Check]
    # How the baseline was measured ("paired in this job", "stored baseline from another run"), if compared.
    comparison: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    # What was measured, for information: rounds and robust cv (noise fails nothing by itself).
    notes: list[str] = field(default_factory=list)
    # Which layers account for the change against the baseline measured beside the candidate, where the
    # backend profiles layers (``spiralprune.deploy.layer_profile.attribute_change``).
    attribution: dict | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        """A failed check is a verdict against the release; an inconclusive one, with none failed, is undecided."""
        statuses = {check.status for check in self.checks}
        return judged(against="fail" in statuses, undecided="inconclusive" in statuses)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "checks": [c.to_dict() for c in self.checks],
            "comparison": self.comparison,
            "latency_verdicts": [v.to_dict() for v in self.verdicts],
            "notes": self.notes,
            "attribution": self.attribution,
        }


def latency_questions(budget: GateBudget, baseline_measured: bool, batch: int) -> list[Question]:
    """The latency questions of the budget, named by their check, about the models ``candidate`` and
    (when the baseline model is measured beside it) ``baseline``; ``batch``: the measured batch, what a
    throughput limit counts items of."""
    return [q for q in _questions(budget, batch) if baseline_measured or not q.is_ratio]


def _questions(budget: GateBudget, batch: int) -> list[Question]:
    """Every latency limit of the budget as a question; a ratio question compares with the baseline."""
    latency = budget.latency
    if latency is None:
        return []
    return latency.questions(batch, CANDIDATE, BASELINE, prefix=f"latency.{latency.statistic}.")


def _latency(
    budget: GateBudget, profile: Profile, baseline: Profile | None, paired: bool, verdicts: Mapping[str, Verdict],
    batch: int | None, attribution: dict | None,
) -> tuple[list[Latency], list[Verdict], str | None]:
    """The budget's latency rules with the verdicts that answer them (a question the paired session
    did not answer judged here on the profile's rounds, or against a stored baseline's); a relative
    limit missed, measured paired, names the layer that accounts for most of the change, when layers
    were profiled."""
    latency = budget.latency
    if latency is None:
        return [], [], None
    confidence = budget.profile.confidence
    statistic = latency.statistic
    m = profile.measurement(batch)
    rules, judged, comparison = [], [], None
    for question in _questions(budget, m.batch):
        if not question.is_ratio:
            v = verdicts.get(question.name) or judge(question, rounds_of(m, statistic, "the candidate's profile"),
                                                     confidence)
            rules.append(Latency(question))
            judged.append(v)
            continue
        if baseline is None:
            raise InputError(f"the budget limits the latency against a baseline ({question.name}); "
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
        if attribution is not None and not v.meets:  # a regression names the layer that made most of it
            note += f"; {change_headline(attribution)}"
        if v.outcome == "undecided" and not paired:
            note += (f" (interval widened by ±{latency.between_run_tolerance:.0%}; re-measure the released model "
                     "beside the candidate with --baseline-model to settle it)")
        rules.append(Latency(question, percent=question.name.endswith(".regression"), note=note))
        judged.append(v)
    return rules, judged, comparison


def measurement_note(name: str, profile: Profile, batch: int | None = None) -> str:
    """``candidate: p50 1.234 ms at batch 1, 12 rounds, 960 calls, robust cv 3.1% (stable; …)``."""
    m = profile.measurement(batch)
    cv = m.stats.get("robust_cv", robust_cv(m.samples_ms))
    rounds = f"{len(m.round_sizes)} rounds, " if m.round_sizes else ""
    return (f"{name}: p50 {m.stats['p50']:.3f} ms at batch {m.batch}, {rounds}{len(m.samples_ms)} calls, "
            f"robust cv {cv:.1%} ({'stable' if m.stable else 'unstable'}; noise fails nothing by itself), "
            f"stopped by {m.stop_reason}")


def run_gate(
    budget: GateBudget,
    *,
    profile: Profile,
    baseline: Profile | None = None,
    paired: bool = False,
    verdicts: Mapping[str, Verdict] | None = None,
    metrics: dict | None = None,
    baseline_metrics: dict | None = None,
    file: ModelFile | None = None,
    parity: ParityResult | None = None,
    batch: int | None = None,
    attribution: dict | None = None,
) -> GateResult:
    """Every check the budget asks for (``spiralprune.pipeline.acceptance.decide``), in a fixed order.
    Missing inputs a check needs are an InputError.

    ``verdicts`` are those the paired session reached while sampling (``latency_questions``); a
    latency question without one is judged here on the profile's rounds. ``paired`` says that
    ``baseline`` was measured in the same rounds as ``profile``; otherwise it is a stored profile
    from another run. ``batch`` picks the measurement to judge (default: the profile's first).
    ``attribution``: the change against the paired baseline by layer, reported and named in the regression check.
    ``file``: what the gated ONNX file ships (``ModelFile.of``), which the ``size:`` limits judge.
    """
    latency, judged, comparison = _latency(budget, profile, baseline, paired, verdicts or {}, batch, attribution)
    evidence = Evidence({v.question.name: v for v in judged}, metrics, baseline_metrics, parity, file)
    metric = budget.quality_metric() if budget.quality is not None else None
    checks = decide(evidence, budget_rules(budget, metric, latency=latency, parity_measured=parity is not None))
    notes = [measurement_note(CANDIDATE, profile, batch)]
    if baseline is not None and comparison is not None:
        notes.append(measurement_note(BASELINE, baseline, profile.measurement(batch).batch))
    return GateResult(checks, comparison, judged, notes, attribution)
