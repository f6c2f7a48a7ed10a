"""Is the new model slower than the baseline? One regression question, judged by ``spiralprune.deploy.verdict``.

The question is "is ``statistic(new)`` at most ``1 + min_effect`` times ``statistic(base)``":
``meets`` is no regression, ``misses`` a regression, ``undecided`` inconclusive (never a pass).
A ``meets`` whose whole interval lies below ``1 - min_effect`` is called an improvement.

Two kinds of evidence answer it:

- **paired in one process** (``spiralprune compare BASE.onnx NEW.onnx``, ``spiralprune gate --baseline-model``):
  both models measured in alternating rounds; the verdict rests on the per-round ratios.
- **two runs** (two profile JSONs, a stored gate baseline): profiles taken apart do not share the
  machine's state. Each side's per-round median gets its own interval (at ``1 - (1 - c) / 2``, so
  both hold together with confidence at least ``c``); the ratio's interval runs from the low end of
  one over the high end of the other, and is then widened by ``tolerance`` on each side for what
  moves between runs, which no within-run interval contains. Measured on the 2-core development
  machine: one model profiled twice back to back differed by up to ±7 %, hence the default 0.10.
  Profiles measured on different targets (fingerprints) are not compared at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spiralprune.deploy.budget import BETWEEN_RUN_TOLERANCE
from spiralprune.deploy.errors import InputError
from spiralprune.deploy.layer_profile import attribute_change
from spiralprune.deploy.profiler import Measurement, Profile
from spiralprune.deploy.verdict import STATISTICS, Question, Verdict, judge_runs
from spiralprune.pipeline.exit_codes import ExitCode, judged

Kind = Literal["paired", "runs"]
KIND_LABELS = {"paired": "paired in this job", "runs": "stored baseline from another run"}
Call = Literal["regression", "improvement", "no regression", "inconclusive"]
# A regression outranks an inconclusive batch, which outranks any pass.
_SEVERITY: dict[str, int] = {"regression": 3, "inconclusive": 2, "improvement": 1, "no regression": 0}
# Fingerprint facts that change latency: comparing across them compares machines, not models.
_FINGERPRINT_KEYS = ("backend", "cpu", "machine", "threads", "precision")
_RUNTIME_LIBRARIES = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class RegressionRule:
    """The regression question's statistic and minimum effect, and how two separate runs are judged."""

    statistic: str = "p50"
    min_effect_pct: float = 5.0
    confidence: float = 0.95
    tolerance: float = BETWEEN_RUN_TOLERANCE

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise InputError(f"unknown statistic '{self.statistic}'; choose one of {', '.join(STATISTICS)}")
        if not 0 <= self.min_effect_pct < 100:
            raise InputError(f"the minimum effect must be a percentage in [0, 100), got {self.min_effect_pct}")
        if not 0.5 <= self.confidence < 1:
            raise InputError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0 <= self.tolerance < 1:
            raise InputError(f"the between-run tolerance must be in [0, 1), got {self.tolerance}")

    def question(self, subject: str = "new", reference: str = "base") -> Question:
        return Question("regression", subject, 1 + self.min_effect_pct / 100, reference=reference,
                        statistic=self.statistic)


@dataclass(frozen=True)
class BatchComparison:
    """One batch size: both sides' statistic, and the verdict on the regression question."""

    batch: int
    base_ms: float
    new_ms: float
    verdict: Verdict
    min_effect_pct: float

    @property
    def call(self) -> Call:
        if self.verdict.outcome == "misses":
            return "regression"
        if self.verdict.outcome == "undecided":
            return "inconclusive"
        return "improvement" if self.verdict.high < 1 - self.min_effect_pct / 100 else "no regression"

    @property
    def change_pct(self) -> float:
        return 100 * (self.verdict.estimate - 1)

    def to_dict(self) -> dict:
        return {"batch": self.batch, "base_ms": self.base_ms, "new_ms": self.new_ms, "call": self.call,
                "change_pct": self.change_pct, "verdict": self.verdict.to_dict()}


@dataclass(frozen=True)
class ProfileComparison:
    rule: RegressionRule
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
            "statistic": self.rule.statistic,
            "verdict": self.verdict,
            "comparison": self.kind_label,
            "min_effect_pct": self.rule.min_effect_pct,
            "tolerance": self.rule.tolerance if self.kind == "runs" else 0.0,
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


def compare_runs(base: Profile, new: Profile, rule: RegressionRule = RegressionRule(), *,
                 batch: int | None = None) -> ProfileComparison:
    """Two profiles from separate runs, on the same target, at every batch size both measured (or ``batch``)."""
    require_same_target(base, new)
    base_batches = {m.batch: m for m in base.measurements}
    new_batches = {m.batch: m for m in new.measurements}
    common = sorted(set(base_batches) & set(new_batches))
    if batch is not None:
        common = [b for b in common if b == batch]
    if not common:
        wanted = f"batch {batch}" if batch is not None else "batch size"
        raise InputError(
            f"the profiles share no {wanted}: baseline has batch {sorted(base_batches)}, new has {sorted(new_batches)}"
        )
    question = rule.question()
    batches = {}
    for b in common:
        verdict = judge_runs(question, rounds_of(new_batches[b], rule.statistic, "the new profile"),
                             rounds_of(base_batches[b], rule.statistic, "the baseline profile"),
                             rule.confidence, rule.tolerance)
        batches[b] = BatchComparison(b, base.stat(rule.statistic, b), new.stat(rule.statistic, b), verdict,
                                     rule.min_effect_pct)
    return ProfileComparison(rule, "runs", batches)


def paired_attribution(base: Profile, new: Profile, statistic: str, confidence: float) -> dict | None:
    """The change from ``base`` to ``new``, measured in the same rounds, attributed to layers
    (``spiralprune.deploy.layer_profile.attribute_change``); None unless both carry a layer profile."""
    b, m = base.measurement(), new.measurement()
    layers = (b.layer_profile(), m.layer_profile())
    if layers[0] is None or layers[1] is None:
        return None
    return attribute_change(layers[0], layers[1], b.rounds(statistic), m.rounds(statistic), confidence)


def paired_comparison(base: Profile, new: Profile, verdict: Verdict, rule: RegressionRule) -> ProfileComparison:
    """The comparison of two models measured in the same rounds (``spiralprune.deploy.profiler.profile_paired``),
    with the change attributed to layers where both were measured with a layer profile."""
    m = new.measurement()
    return ProfileComparison(rule, "paired", {
        m.batch: BatchComparison(m.batch, base.stat(rule.statistic, m.batch), new.stat(rule.statistic, m.batch),
                                 verdict, rule.min_effect_pct),
    }, paired_attribution(base, new, rule.statistic, rule.confidence))
