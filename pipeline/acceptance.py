"""Acceptance: what was measured of a model under judgement, the rules it is judged by, and ``decide``.

Every caller that accepts or rejects a model compiles its budget (``spiralprune.deploy.budget.Budget``, one
type for all of them) with ``budget_rules``, builds its ``Evidence`` and calls ``decide``: a spiral try
(``spiralprune.pipeline.passes.steps.tries``), the final recovery and the INT8 pass (``spiralprune.pipeline.passes``), and
``spiralprune gate`` (``spiralprune.pipeline.gate.checks``, which ``spiralprune deploy`` runs on the device's profile);
``spiralprune compare`` reads its regression verdict as the gate's check (``Latency``). No torch is imported
here: a comparison of two stored profiles, and every command's ``--help``, judges without it.
A new limit is one rule class and one budget key, compiled here. The ``Check``s ``decide`` returns are
what the ledger stores and what every report renders; a try's reason is their messages. (The final
recovery's rule, at least as good as the step it recovers, is its own: no budget says it.)

A check's margin is signed so that a positive value is headroom and a negative one the amount by
which the limit was missed, whichever way the limit points (a maximum or a minimum). Latency rules
read the judge's verdicts (``spiralprune.deploy.verdict``): the margin runs from the far end of the confidence
interval, and an ``undecided`` verdict is ``inconclusive``, which never passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import Budget, ParityBudget
from spiralprune.deploy.verdict import Question, Verdict
from spiralprune.pipeline.tasks import Metric

if TYPE_CHECKING:  # the parity check runs torch, counting a file's MACs reads it with onnx; judging neither does
    from spiralprune.deploy.model_file import ModelFile
    from spiralprune.pipeline.export import ParityResult

Status = Literal["pass", "fail", "inconclusive"]
Kind = Literal["latency", "quality", "parity", "size"]
_STATUS: dict[str, Status] = {"meets": "pass", "misses": "fail", "undecided": "inconclusive"}

_FORMATS = {
    "ms": "{:.3f} ms",
    "x": "{:.4g}x",
    "%": "{:.2f}%",
    "points": "{:.2f} points",
    "MB": "{:.3f} MB",
    "params": "{:,.0f} params",
    "MACs": "{:,.0f} MACs",
    "": "{:.3g}",
}


def format_value(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = _FORMATS[unit].format(abs(value) if signed else value)
    return (("+" if value >= 0 else "-") + text) if signed else text


@dataclass(frozen=True)
class Check:
    """One rule's outcome: the value measured, the limit, the signed margin, and one sentence."""

    name: str
    status: Status
    measured: float | None
    limit: float | None
    margin: float | None
    unit: str
    message: str
    kind: Kind

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def line(self) -> str:
        """``FAIL latency.p50.max_ms: measured 5.412 ms, limit 5.000 ms, margin -0.412 ms (why)``."""
        return (
            f"{self.status.upper()} {self.name}: measured {format_value(self.measured, self.unit)}, "
            f"limit {format_value(self.limit, self.unit)}, "
            f"margin {format_value(self.margin, self.unit, signed=True)} ({self.message})"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Check:
        return cls(**data)


@dataclass(frozen=True)
class Evidence:
    """What was measured of a model under judgement: the judge's verdicts by question name, its
    metrics (fractions, as ``spiralprune.pipeline.evaluate`` gives them) and those of the model it is compared
    with, its ONNX parity, and what its ONNX file ships (``file``: size, parameters, MACs, counted the one
    way ``spiralprune.deploy.model_file`` counts them for every caller). A rule whose evidence is missing
    says so in one line (an ``InputError``). A spiral's model (``spiralprune.pipeline.measure.evidence_of``)
    also has its ONNX export's path and the name of its task's metric, which its ``summary`` keeps."""

    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    metrics: Mapping[str, float] | None = None
    reference_metrics: Mapping[str, float] | None = None
    parity: ParityResult | None = None
    file: ModelFile | None = None
    onnx_path: Path | None = None
    metric: str | None = None  # the task's metric, the one budgets judge

    def summary(self) -> dict:
        """What the ledger and the teacher's summary keep of a spiral's model apart from its latency: ``quality``
        is the task's ``metric``, ``metrics`` every number the task measured (a confusion matrix stays in
        ``eval.json``)."""
        if self.metric is None or self.metrics is None or self.parity is None or self.file is None:
            raise ValueError("Evidence.summary needs a spiral model's evidence: its metric, metrics, parity and file")
        return {
            "parity": self.parity.to_dict(),
            "metric": self.metric,
            "quality": self.metrics[self.metric],
            "metrics": {k: float(v) for k, v in self.metrics.items() if isinstance(v, (int, float))},
            "params": self.file.params,
            "macs": self.file.macs,
            "size_mb": self.file.size_mb,
        }

    def model_file(self, limit: str) -> ModelFile:
        """``file``, or the one line saying that ``limit`` needs it."""
        if self.file is None:
            raise InputError(f"the budget limits {limit}, which was not measured for this model (no ONNX file judged)")
        return self.file


class Rule(Protocol):
    """One limit of a budget: the checks it makes of the evidence (most rules make one)."""

    def checks(self, evidence: Evidence) -> list[Check]: ...


def _at_most(kind: Kind, name: str, measured: float, limit: float, unit: str, what: str, label: str = "max") -> Check:
    ok = measured <= limit
    return Check(name, "pass" if ok else "fail", measured, limit, limit - measured, unit,
                 f"{what} {format_value(measured, unit)} {'<=' if ok else '>'} {label} {format_value(limit, unit)}",
                 kind)


def _at_least(kind: Kind, name: str, measured: float, limit: float, unit: str, what: str, label: str = "min") -> Check:
    ok = measured >= limit
    return Check(name, "pass" if ok else "fail", measured, limit, measured - limit, unit,
                 f"{what} {format_value(measured, unit)} {'>=' if ok else '<'} {label} {format_value(limit, unit)}",
                 kind)


@dataclass(frozen=True)
class Latency:
    """A question the judge answered (``Evidence.verdicts[question.name]``); ``percent`` shows a ratio
    as a regression in percent; ``note`` prefixes its message (how the reference was measured)."""

    question: Question
    percent: bool = False
    note: str = ""

    def checks(self, evidence: Evidence) -> list[Check]:
        v = evidence.verdicts.get(self.question.name)
        if v is None:
            raise InputError(f"no latency verdict answers '{self.question.name}'")
        if self.percent:
            measured, limit, high, unit = 100 * (v.estimate - 1), 100 * (v.question.limit - 1), 100 * (v.high - 1), "%"
        else:
            measured, limit, high = v.estimate, v.question.limit, v.high
            unit = "x" if v.question.is_ratio else "ms"
        message = f"{self.note}: {v.message()}" if self.note else v.message()
        return [Check(v.question.name, _STATUS[v.outcome], measured, limit, limit - high, unit, message, "latency")]


@dataclass(frozen=True)
class QualityLimit:
    """The model's metric at least ``limit`` (at most, for a lower-is-better metric), in shown units;
    ``label`` names the limit in messages."""

    limit: float
    metric: Metric = Metric()
    name: str = "accuracy.min"
    label: str = "min"

    def checks(self, evidence: Evidence) -> list[Check]:
        measured = self.metric.shown(evidence.metrics, self.name)
        bound = _at_least if self.metric.higher_is_better else _at_most
        return [bound("quality", self.name, measured, self.limit, self.metric.unit, self.metric.name, self.label)]


@dataclass(frozen=True)
class QualityDrop:
    """The model's metric at most ``max_drop`` (shown units: points of a percentage) worse than the
    reference model's (``Evidence.reference_metrics``: a gate's baseline, the INT8 stage's float model)."""

    max_drop: float
    reference: str = "baseline"
    metric: Metric = Metric()
    name: str = "accuracy.max_drop"

    def checks(self, evidence: Evidence) -> list[Check]:
        m = self.metric
        measured = m.shown(evidence.metrics, self.name)
        if evidence.reference_metrics is None or m.name not in evidence.reference_metrics:
            raise InputError(f"{self.name} limits the drop against the {self.reference}, but the {self.reference} "
                             f"records no {m.name}; pass --baseline-model with --data, or a gate or run report "
                             "as --baseline")
        base = m.shown(evidence.reference_metrics, self.name, self.reference)
        shown = format_value(measured, m.unit), format_value(base, m.unit)
        return [_at_most("quality", self.name, m.worse_by(measured, base), self.max_drop, m.drop_unit,
                         f"{m.name} {shown[0]} vs the {self.reference}'s {shown[1]}: "
                         + ("a drop of" if m.higher_is_better else "a rise of"), "max_drop")]


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against the source torch model: every output's max |diff| within its tolerance
    (``ParityBudget.atol_of``, scaled by the output's largest |value| above 1; the check shows the
    output farthest from its own) and the task's agreement (top-1, per pixel, reproduced detections) where it has one; ``limits`` None: the tolerances the parity was run with."""

    limits: ParityBudget | None = None

    def checks(self, evidence: Evidence) -> list[Check]:
        parity = evidence.parity
        if parity is None:
            raise InputError("the budget checks ONNX parity but there is no source model to compare with; "
                             "gate a model spec or checkpoint, or drop 'parity'")
        limits = self.limits or parity.limits
        on = f"ONNX Runtime vs torch on {parity.samples} inputs:"
        checks = []
        farthest = parity.farthest(limits)
        if farthest is not None:  # None: a graph whose work depends on its data, compared through its task alone
            output, diff, tolerance = farthest
            where = f" of '{output}'" if len(parity.outputs) > 1 else ""
            checks.append(_at_most("parity", "parity.max_abs_diff", diff, tolerance, "", f"{on} max |diff|{where}",
                                   "tolerance"))
        if parity.top1_agreement is not None:  # a task without class logits or detections compares values only
            through = f" (detections: the graph has {', '.join(parity.data_dependent)})" if farthest is None else ""
            checks.append(_at_least("parity", "parity.top1_agreement", 100 * parity.top1_agreement,
                                    100 * limits.min_top1_agreement, "%", f"{on} agreement{through}"))
        return checks


@dataclass(frozen=True)
class MaxSize:
    """The ONNX file at most ``max_mb`` MB (10^6 bytes) and/or at most ``max_params`` parameters stored in it."""

    max_mb: float | None = None
    max_params: int | None = None

    def checks(self, evidence: Evidence) -> list[Check]:
        checks = []
        for name, fact, limit, unit in (("size.mb", "size_mb", self.max_mb, "MB"),
                                        ("size.params", "params", self.max_params, "params")):
            if limit is not None:
                value = getattr(evidence.model_file(name), fact)
                checks.append(_at_most("size", name, float(value), float(limit), unit, "the ONNX model"))
        return checks


@dataclass(frozen=True)
class MaxMacs:
    """The ONNX model's multiply-accumulates in one call (``ModelFile.macs``) at most ``max_macs``."""

    max_macs: int

    def checks(self, evidence: Evidence) -> list[Check]:
        macs = evidence.model_file("size.macs").macs
        return [_at_most("size", "size.macs", float(macs), float(self.max_macs), "MACs", "the ONNX model's")]


def budget_rules(
    budget: Budget, metric: Metric | None, *, latency: Sequence[Latency] = (), reference: str = "baseline",
    parity_measured: bool = False,
) -> list[Rule]:
    """``budget``'s rules in a fixed order: latency, quality, size, parity.

    ``latency``: the budget's latency questions as the caller asked them (what is measured beside what
    differs: the teacher in a run's rounds, the released model in the gate's, the float model in the
    INT8 stage's); ``metric``: the quality budget's metric as the task measures it; ``reference``: what
    ``max_drop`` compares with (``Evidence.reference_metrics``); parity is checked when the budget
    limits it or, with its own tolerances, whenever it was measured (``parity_measured``)."""
    rules: list[Rule] = list(latency)
    quality = budget.quality
    if quality is not None:
        if getattr(quality, metric.bound) is not None:
            rules.append(QualityLimit(getattr(quality, metric.bound), metric, name=f"{metric.name}.{metric.bound}",
                                      label=metric.bound))
        if quality.max_drop is not None:
            rules.append(QualityDrop(quality.max_drop, reference, metric, name=f"{metric.name}.max_drop"))
    if budget.size is not None:
        if budget.size.max_mb is not None or budget.size.max_params is not None:
            rules.append(MaxSize(budget.size.max_mb, budget.size.max_params))
        if budget.size.max_macs is not None:
            rules.append(MaxMacs(budget.size.max_macs))
    if budget.parity is not None or parity_measured:
        rules.append(Parity(budget.parity))
    return rules


def decide(evidence: Evidence, rules: Sequence[Rule]) -> list[Check]:
    """Every rule's checks on ``evidence``, in the rules' order."""
    return [check for rule in rules for check in rule.checks(evidence)]


def reason(checks: Sequence[Check]) -> str:
    """A verdict in one line: the messages of the checks that did not pass, else those of the latency
    and quality checks (parity and size, passed, go without saying)."""
    problems = [c for c in checks if not c.passed]
    return "; ".join(c.message for c in problems or [c for c in checks if c.kind in ("latency", "quality")])


def passed(checks: Sequence[Check]) -> bool:
    return all(c.passed for c in checks)
