"""The pass registry: every registered pass plans from a run config, and a new stage is one folder and
one registry entry, run by the real spiral without a change to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spiralprune.pipeline.cli import main
from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.ledger import read_ledger
from spiralprune.pipeline.passes import PASSES, Registered, build_passes, later_kinds
from tests.pipeline.passes.bf16.record import Bf16Entry
from tiny_spiral import tiny_config

INT8 = {"quantize": {"calibration_batches": 2, "batch_size": 16}}


@pytest.mark.parametrize("kind", PASSES)
def test_every_pass_names_its_kind_and_plans_from_a_run_config(kind: str):
    """A pass's stage and its record agree on the kind; a config without ``quantize:`` plans no INT8 pass."""
    registered = PASSES[kind]
    stage = registered.planned(parse_config(tiny_config(**INT8)))
    assert stage is not None and type(stage).kind == kind
    planned = [type(p).kind for p in build_passes(parse_config(tiny_config()))]
    assert planned == [k for k in PASSES if k != "quantize"]


def test_the_passes_run_in_the_registrys_order():
    assert list(PASSES) == ["step", "recovery", "quantize"]
    assert later_kinds("step") == ["recovery", "quantize"] and later_kinds("quantize") == []


@pytest.mark.slow
def test_a_new_pass_is_a_folder_and_a_registry_entry(write_config, tmp_path: Path, monkeypatch):
    """``tests/pipeline/passes/bf16`` registered after the INT8 pass: the spiral runs it after the steps, the
    ledger reads its line as its record, the reports show it, its model is the result, and a resumed
    run does not run it again."""
    monkeypatch.setitem(PASSES, "bf16", Registered(Bf16Entry, "tests.pipeline.passes.bf16.stage:Bf16"))
    out = tmp_path / "run"
    config = write_config()
    assert main(["run", str(config), "--out", str(out)]) == 0
    step, rounded = read_ledger(out / "ledger.jsonl")
    assert type(rounded) is Bf16Entry and rounded.rounded_of == step.dir and 0 < rounded.max_change < 0.01
    assert rounded.verdicts == step.verdicts and rounded.message.startswith("final budget met")
    assert rounded.accepted == (rounded.quality >= step.quality)
    report = json.loads((out / "report.json").read_text())
    assert f"bf16 weights {'accepted' if rounded.accepted else 'rejected'}" in report["message"]
    assert "| bf16 weights |" in (out / "report.md").read_text()
    result = out / (rounded.dir if rounded.accepted else step.dir) / "model.onnx"
    assert (out / "model.onnx").read_bytes() == result.read_bytes()
    before = (out / "ledger.jsonl").read_bytes()
    assert main(["run", str(config), "--out", str(out), "--resume"]) == 0
    assert (out / "ledger.jsonl").read_bytes() == before
