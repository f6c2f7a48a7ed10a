"""``spiralprune.pipeline.acceptance``: every rule's check, its margin's sign, missing evidence, and ``decide``."""

from __future__ import annotations

import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import ParityBudget
from spiralprune.deploy.model_file import ModelFile
from spiralprune.deploy.verdict import Question, judge
from spiralprune.pipeline.acceptance import (
    Check, Evidence, Latency, MaxMacs, MaxSize, Parity, QualityDrop, QualityLimit, decide, passed, reason,
)
from spiralprune.pipeline.export import ParityResult

RNG = np.random.default_rng(0)


def verdict(question: Question, centre: float, spread: float = 0.01):
    """The judge on 30 synthetic rounds around ``centre`` (a known distribution: no machine timed)."""
    return judge(question, list(centre * (1 + spread * RNG.standard_normal(30))), 0.95)


MS = Question("latency.p50.max_ms", "candidate", 2.0)
SPEEDUP = Question("final speedup", "candidate", 1 / 3, "teacher")
PARITY = ParityResult(max_abs_diff=2e-4, top1_agreement=1.0, samples=64, limits=ParityBudget(atol=1e-3, min_top1_agreement=0.99))
EVIDENCE = Evidence(
    {MS.name: verdict(MS, 1.5), SPEEDUP.name: verdict(SPEEDUP, 0.4)},
    metrics={"accuracy": 0.95}, reference_metrics={"accuracy": 0.97}, parity=PARITY,
    file=ModelFile(size_mb=1.5, params=120_000, macs=3_000_000),
)

# Every rule kind, with what it makes of EVIDENCE: (checks' names, statuses, measured, limit, margin of the first).
CASES = {
    "latency ms": (Latency(MS), ["latency.p50.max_ms"], ["pass"], 1.5, 2.0, None),
    "latency ratio": (Latency(SPEEDUP), ["final speedup"], ["fail"], 0.4, 1 / 3, None),
    "quality floor": (QualityLimit(96.0, name="accuracy.floor", label="floor"), ["accuracy.floor"], ["fail"], 95.0, 96.0, -1.0),
    "quality drop": (QualityDrop(3.0), ["accuracy.max_drop"], ["pass"], 2.0, 3.0, 1.0),
    "parity": (Parity(), ["parity.max_abs_diff", "parity.top1_agreement"], ["pass", "pass"], 2e-4, 1e-3, 8e-4),
    "parity, stricter limits": (Parity(ParityBudget(atol=1e-4)), ["parity.max_abs_diff", "parity.top1_agreement"],
                                ["fail", "pass"], 2e-4, 1e-4, -1e-4),
    "size": (MaxSize(1.0), ["size.mb"], ["fail"], 1.5, 1.0, -0.5),
    "params": (MaxSize(max_params=200_000), ["size.params"], ["pass"], 120_000, 200_000, 80_000),
    "size and params": (MaxSize(1.0, 200_000), ["size.mb", "size.params"], ["fail", "pass"], 1.5, 1.0, -0.5),
    "macs": (MaxMacs(2_000_000), ["size.macs"], ["fail"], 3_000_000, 2_000_000, -1_000_000),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_checks_its_evidence_with_a_margin_that_is_headroom_when_positive(case: str) -> None:
    rule, names, statuses, measured, limit, margin = CASES[case]
    checks = decide(EVIDENCE, [rule])
    assert [c.name for c in checks] == names and [c.status for c in checks] == statuses
    first = checks[0]
    assert first.measured == pytest.approx(measured, rel=0.05) and first.limit == pytest.approx(limit)
    if margin is not None:
        assert first.margin == pytest.approx(margin)
    assert (first.margin >= 0) == first.passed  # headroom when it passes, the miss when it fails
    assert first.line().startswith(f"{first.status.upper()} {first.name}: measured ")
    assert Check.from_dict(first.to_dict()) == first


def test_a_latency_rule_reads_the_judge_and_undecided_never_passes() -> None:
    regression = Question("regression", "candidate", 1.05, "base")
    straddling = verdict(regression, 1.05, spread=0.2)
    assert straddling.outcome == "undecided"
    (check,) = decide(Evidence({regression.name: straddling}), [Latency(regression, percent=True, note="paired")])
    assert check.status == "inconclusive" and not check.passed and check.unit == "%"
    assert check.limit == pytest.approx(5.0) and check.message.startswith("paired: regression: undecided")
    (ratio,) = decide(EVIDENCE, [Latency(SPEEDUP)])
    assert ratio.unit == "x" and ratio.message == EVIDENCE.verdicts[SPEEDUP.name].message()


@pytest.mark.parametrize(("rule", "evidence", "message"), [
    (Latency(MS), Evidence(), "no latency verdict answers 'latency.p50.max_ms'"),
    (QualityLimit(90.0), Evidence(), "pass --data"),
    (QualityDrop(1.0), Evidence(metrics={"accuracy": 0.9}), "the baseline records no accuracy"),
    (Parity(), Evidence(), "no source model"),
    (MaxSize(1.0), Evidence(), "limits size.mb, which was not measured"),
    (MaxSize(max_params=10), Evidence(), "limits size.params, which was not measured"),
    (MaxMacs(10), Evidence(), "limits size.macs, which was not measured"),
])
def test_missing_evidence_is_one_clear_line(rule, evidence: Evidence, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decide(evidence, [rule])


def test_the_reason_names_what_failed_or_else_what_decided() -> None:
    checks = decide(EVIDENCE, [Latency(MS), QualityLimit(90.0), Parity(), MaxSize(2.0)])
    assert passed(checks)
    assert reason(checks) == "; ".join(c.message for c in checks if c.kind in ("latency", "quality"))
    failing = decide(EVIDENCE, [Latency(MS), QualityLimit(96.0, label="floor"), MaxSize(1.0)])
    assert not passed(failing)
    assert reason(failing) == "accuracy 95.00% < floor 96.00%; the ONNX model 1.500 MB > max 1.000 MB"


def test_a_spiral_model_s_evidence_is_summarized_for_the_ledger(tmp_path):
    """One record for what a model under judgement is: a try's evidence apart from latency (``evidence_of``)
    gets its verdicts added and is decided; its summary is what the ledger keeps, ``quality`` the task's metric."""
    evidence = Evidence(metrics={"accuracy": 0.91, "f1_macro": 0.9, "confusion": [[1]]}, parity=PARITY,
                        file=ModelFile(1.5, 1000, 20000), onnx_path=tmp_path / "model.onnx", metric="accuracy")
    assert evidence.summary() == {"parity": PARITY.to_dict(), "metric": "accuracy", "quality": 0.91,
                                  "metrics": {"accuracy": 0.91, "f1_macro": 0.9}, "params": 1000, "macs": 20000,
                                  "size_mb": 1.5}
    with pytest.raises(ValueError, match="needs a spiral model's evidence"):
        Evidence(metrics={"accuracy": 0.91}).summary()
