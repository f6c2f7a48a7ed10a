"""Is the new model slower than the baseline? One regression question, judged by ``spiralprune.deploy.verdict``.

The question is a latency budget's (``spiralprune.deploy.budget.LatencyBudget``) ``max_regression_pct``, compiled
as the gate compiles it (``LatencyBudget.questions``): "is ``statistic(new)`` at most
``1 + max_regression_pct / 100`` times ``statistic(base)``" (``--min-effect``). ``meets`` is no regression,
``misses`` a regression, ``undecided`` inconclusive (never a pass). A ``meets`` whose whole interval lies
below ``1 - max_regression_pct / 100`` is called an improvement.

Two kinds of evidence answer it:

- **paired in one process** (``spiralprune compare BASE.onnx NEW.onnx``, ``spiralprune gate --baseline-model``):
  both models measured in alternating rounds; the verdict rests on the per-round ratios.
- **two runs** (two profile JSONs, a stored gate baseline): profiles taken apart do not share the
  machine's state. Each side's per-round median gets its own interval (at ``1 - (1 - c) / 2``, so
  both hold together with confidence at least ``c``); the ratio's interval runs from the low end of
  one over the high end of the other, and is then widened by the budget's ``between_run_tolerance``
  on each side for what moves between runs, which no within-run interval contains. Measured on the
  2-core development machine: one model profiled twice back to back differed by up to ±7 %, hence
  the default 0.10. Profiles measured on different targets (fingerprints) are not compared at all.

The confidence ``c`` is the measurement's (``spiralprune.deploy.sampling.ProfileSettings.confidence``), as for
every other latency verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import LatencyBudget
from spiralprune.deploy.layer_profile import attribute_change
from spiralprune.deploy.profiler import Measurement, Profile
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.validation import validate
from spiralprune.deploy.verdict import Question, Verdict, judge_runs
from spiralprune.pipeline.acceptance import Check, Evidence, Latency, decide
from spiralprune.pipeline.exit_codes import ExitCode, judged

Kind = Literal["paired", "runs"]
KIND_LABELS = {"paired": "paired in this job", "runs": "stored baseline from another run"}
Call = Literal["regression", "improvement", "no regression", "inconclusive"]
# A regression outranks an inconclusive batch, which outranks any pass.
_SEVERITY: dict[str, int] = {"regression": 3, "inconclusive": 2, "improvement": 1, "no regression": 0}
# Fingerprint facts that change latency: comparing across them compares machines, not models.
_FINGERPRINT_KEYS = ("backend", "cpu", "machine", "threads", "precision")
_RUNTIME_LIBRARIES = ("onnxruntime", "tensorrt")


# ``spiralprune compare``'s default budget: the new model at most 5 % slower than the baseline.
REGRESSION_BUDGET = LatencyBudget(max_regression_pct=5.0)
# The names the two models go by in the regression question.
NEW, BASE = "new", "base"


def regression_budget(budget: LatencyBudget | Mapping[str, Any], source: str = "budget") -> LatencyBudget:
    """``budget`` (a ``LatencyBudget`` or its keys) as a comparison judges it, or an ``InputError`` in one line.

    A comparison judges ``max_regression_pct`` only; it is also the threshold of an improvement (an
    interval entirely below ``1 - max_regression_pct / 100``), so it is under 100 %."""
    if not isinstance(budget, LatencyBudget):
        budget = validate(LatencyBudget, budget, source)
    others = [k for k in budget.limits() if k != "max_regression_pct"]
    if others:
        raise InputError(f"{source}: latency.{others[0]}: a comparison judges max_regression_pct against the "
                         "baseline only")
    if budget.max_regression_pct >= 100:
        raise InputError(f"{source}: the minimum effect (max_regression_pct) must be a percentage in [0, 100), "
                         f"got {budget.max_regression_pct:g}")
    return budget


def regression_question(budget: LatencyBudget, batch: int) -> Question:
    """``budget``'s ``max_regression_pct`` (``regression_budget``) as the judge's question about ``new``
    against ``base`` at ``batch``, compiled as the gate compiles it."""
    [question] = regression_budget(budget).questions(batch, NEW, BASE)
    return question


@dataclass(frozen=True)
class BatchComparison:
    """One batch size: both sides' statistic, and the verdict on the regression question."""

    batch: int
    base_ms: float
    new_ms: float
    verdict: Verdict
    max_regression_pct: float

    @property
    def check(self) -> Check:
        """The verdict as the gate's regression check (``spiralprune.pipeline.acceptance.Latency``): the
        change in percent, the limit and the margin; passed, failed or inconclusive."""
        [check] = decide(Evidence({self.verdict.question.name: self.verdict}),
                         [Latency(self.verdict.question, percent=True)])
        return check

    @property
    def call(self) -> Call:
        """The check's status, a pass whose whole interval lies below ``-max_regression_pct`` an improvement."""
        status = self.check.status
        if status == "fail":
            return "regression"
        if status == "inconclusive":
            return "inconclusive"
        return "improvement" if self.verdict.high < 1 - self.max_regression_pct / 100 else "no regression"

    @property
    def change_pct(self) -> float:
        return self.check.measured

    def to_dict(self) -> dict:
        return {"batch": self.batch, "base_ms": self.base_ms, "new_ms": self.new_ms, "call": self.call,
                "change_pct": self.change_pct, "verdict": self.verdict.to_dict()}


@dataclass(frozen=True)
class ProfileComparison:
    """Every batch compared on ``budget``'s regression limit (``regression_question``)."""

    budget: LatencyBudget
    kind: Kind
    batches: dict[int, BatchComparison]
    # Which layers account for the change (``spiralprune.deploy.layer_profile.attribute_change``): paired
    # measurements with a layer profile of both models only.
    attribution: dict | None = None

    @property
    def verdict(self) -> Call:
        return max((b.call for b in self.batches.values()), key=_SEVERITY.__getitem__)

    @property
    def exit_code(self) -> ExitCode:
        """A regression is a verdict against the new model; an inconclusive comparison is undecided."""
        return judged(against=self.verdict == "regression", undecided=self.verdict == "inconclusive")

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    def to_dict(self) -> dict:
        return {
            "statistic": self.budget.statistic,
            "verdict": self.verdict,
            "comparison": self.kind_label,
            "min_effect_pct": self.budget.max_regression_pct,
            "tolerance": self.budget.between_run_tolerance if self.kind == "runs" else 0.0,
            "batches": {str(batch): c.to_dict() for batch, c in self.batches.items()},
            **({"attribution": self.attribution} if self.attribution is not None else {}),
        }


def fingerprint_differences(base: Profile, new: Profile) -> list[str]:
    """The facts of the two targets that differ (CPU, threads, GPU, runtime library …), empty when they match."""
    notes = []
    for key in _FINGERPRINT_KEYS:
        a, b = base.fingerprint.get(key), new.fingerprint.get(key)
        if a != b:
            notes.append(f"{key} {a!r} vs {b!r}")
    gpus = [(p.fingerprint.get("gpu") or {}).get("name") for p in (base, new)]
    if gpus[0] != gpus[1]:
        notes.append(f"gpu {gpus[0]!r} vs {gpus[1]!r}")
    for library in _RUNTIME_LIBRARIES:
        a, b = ((p.fingerprint.get("libraries") or {}).get(library) for p in (base, new))
        if a != b:
            notes.append(f"{library} {a!r} vs {b!r}")
    return notes


def require_same_target(base: Profile, new: Profile, base_name: str = "the baseline",
                        hint: str = "re-measure both paired with spiralprune compare BASE.onnx NEW.onnx") -> None:
    differences = fingerprint_differences(base, new)
    if differences:
        raise InputError(f"{base_name} was measured on another target ({'; '.join(differences)}): "
                         f"its numbers compare machines, not models; {hint}")


def rounds_of(m: Measurement, statistic: str, what: str) -> list[float]:
    if len(m.round_sizes) < 2:
        raise InputError(f"{what} records no rounds at batch {m.batch} (measured by an older spiral "
                         "or for too short a time): profile it again")
    return m.rounds(statistic)


def compare_runs(base: Profile, new: Profile, budget: LatencyBudget = REGRESSION_BUDGET,
                 settings: ProfileSettings = ProfileSettings(), *,
                 batches: Sequence[int] | None = None) -> ProfileComparison:
    """Two profiles from separate runs, on the same target, at every batch size both measured (or those of
    ``batches`` they share), judged at ``settings.confidence``."""
    require_same_target(base, new)
    base_batches = {m.batch: m for m in base.measurements}
    new_batches = {m.batch: m for m in new.measurements}
    common = sorted(set(base_batches) & set(new_batches))
    if batches is not None:
        common = [b for b in common if b in batches]
    if not common:
        wanted = f"batch {','.join(map(str, batches))}" if batches is not None else "batch size"
        raise InputError(
            f"the profiles share no {wanted}: baseline has batch {sorted(base_batches)}, new has {sorted(new_batches)}"
        )
    statistic = budget.statistic
    batches = {}
    for b in common:
        verdict = judge_runs(regression_question(budget, b), rounds_of(new_batches[b], statistic, "the new profile"),
                             rounds_of(base_batches[b], statistic, "the baseline profile"),
                             settings.confidence, budget.between_run_tolerance)
        batches[b] = BatchComparison(b, base.stat(statistic, b), new.stat(statistic, b), verdict,
                                     budget.max_regression_pct)
    return ProfileComparison(budget, "runs", batches)


def paired_attribution(base: Profile, new: Profile, statistic: str, confidence: float) -> dict | None:
    """The change from ``base`` to ``new``, measured in the same rounds, attributed to layers
    (``spiralprune.deploy.layer_profile.attribute_change``) at the first batch both carry a layer profile
    of; None where there is none."""
    for b in base.measurements:
        m = new.measurement(b.batch)
        layers = (b.layer_profile(), m.layer_profile())
        if layers[0] is not None and layers[1] is not None:
            return {"batch": b.batch, **attribute_change(layers[0], layers[1], b.rounds(statistic),
                                                           m.rounds(statistic), confidence)}
    return None


def paired_comparison(base: Profile, new: Profile, verdicts: Mapping[int, Verdict], budget: LatencyBudget,
                      settings: ProfileSettings) -> ProfileComparison:
    """The comparison of two models measured in the same rounds with ``settings``
    (``spiralprune.deploy.profiler.profile_paired``), at each batch of ``verdicts`` (batch -> the judge's
    verdict of that batch's rounds), with the change attributed to layers where both were measured
    with a layer profile."""
    return ProfileComparison(budget, "paired", {
        batch: BatchComparison(batch, base.stat(budget.statistic, batch), new.stat(budget.statistic, batch),
                               verdict, budget.max_regression_pct)
        for batch, verdict in verdicts.items()
    }, paired_attribution(base, new, budget.statistic, settings.confidence))
