import json
from pathlib import Path

import pytest

from spiralprune import __version__
from spiralprune.core.errors import InputError
from spiralprune.pipeline.ledger import FORMER_NAMES, append_entry, read_ledger, repair_ledger
from spiralprune.pipeline.passes import PASSES
from spiralprune.pipeline.passes.record import VERSION, LedgerEntry
from tests.ledger_entries import OWN_FIELDS, ledger_entry


def test_append_and_read(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    written = [ledger_entry(1), ledger_entry(2, accepted=False, kind="recovery", message="stopped")]
    for entry in written:
        append_entry(path, entry)
    assert read_ledger(path) == [e.model_copy(update={"spiral": __version__}) for e in written]  # who wrote it
    assert all(json.loads(line)["version"] == VERSION for line in path.read_text().splitlines())


@pytest.mark.parametrize("kind", PASSES)
def test_every_pass_kind_reads_back_as_its_own_record(tmp_path: Path, kind: str):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, ledger_entry(kind=kind))
    (entry,) = read_ledger(path)
    assert type(entry) is PASSES[kind].record and entry.kind == kind
    assert set(json.loads(path.read_text())) == set(PASSES[kind].record.model_fields)  # no other kind's fields


# A version 2 line of each kind as the spiral wrote it: one flat record, the other kinds' fields empty.
_FLAT = {"kind": "step", "message": None, "reduction": None, "predicted_ms": None, "candidates": [], "probes": [],
         "predictor": None, "predicted_layers": {}, "compiles": None, "quantize_of": None, "quantize": None}


@pytest.mark.parametrize("kind, own", [
    ("step", {"reduction": 0.3, "predicted_ms": 0.9, "candidates": [{"ratio": 0.3}], "compiles": {"compiled": 1}}),
    ("recovery", {"message": "stopped after max_steps=1"}),
    ("quantize", {"message": "stopped", "quantize_of": "steps/step-01-try-1", "quantize": {"accepted": True}}),
])
def test_a_version_2_line_is_read_as_its_kinds_record(tmp_path: Path, kind: str, own: dict):
    """Run folders written before the ledger had one record per pass still report and resume."""
    common = as_written_before_4(ledger_entry(1).model_dump(mode="json", include=set(LedgerEntry.model_fields)))
    line = {**common, **_FLAT, **own, "version": 2, "kind": kind}
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (entry,) = read_ledger(path)
    assert type(entry) is PASSES[kind].record and entry.version == VERSION
    fields = PASSES[kind].record.model_fields
    assert entry.model_dump(mode="json", exclude={"version"}) == {
        FORMER_NAMES.get(k, k): v for k, v in line.items() if FORMER_NAMES.get(k, k) in fields and k != "version"}


def as_written_before_4(line: dict) -> dict:
    """A line in the names ledger versions 1 to 3 wrote: ``target_ms``, ``candidates``."""
    former = {new: old for old, new in FORMER_NAMES.items()}
    return {former.get(k, k): v for k, v in line.items()}


def test_a_version_3_try_is_read_with_this_version_s_names(tmp_path: Path):
    """Version 4 gave a word one meaning: a try's aim is ``goal_ms`` (``target`` is where a model is measured),
    its screened plans ``plans`` (``candidate`` is the model under judgement)."""
    written = ledger_entry(1).model_dump(mode="json")
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({**as_written_before_4(written), "version": 3, "candidates": [{"ratio": 0.3}]}) + "\n")
    (entry,) = read_ledger(path)
    assert entry.version == VERSION and entry.goal_ms == written["goal_ms"] and entry.plans == [{"ratio": 0.3}]


def test_a_version_2_line_with_another_kinds_field_set_is_refused(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    line = {**ledger_entry(1, kind="recovery").model_dump(mode="json"), "version": 2, "candidates": [{"ratio": 0.3}]}
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=r"line 1 is not a ledger entry \(plans: Extra inputs"):
        read_ledger(path)


def test_truncated_last_line_is_dropped_and_repaired(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, ledger_entry(1))
    with open(path, "ab") as handle:
        handle.write(b'{"step": 2, "acc')  # a write killed halfway
    assert [e.step for e in read_ledger(path)] == [1]
    repair_ledger(path)
    assert path.read_bytes().endswith(b"}\n")
    append_entry(path, ledger_entry(2))
    assert [e.step for e in read_ledger(path)] == [1, 2]


def test_missing_ledger_is_empty(tmp_path: Path):
    assert read_ledger(tmp_path / "none.jsonl") == []


def test_a_line_without_a_version_or_kind_is_a_version_1_step_read_as_this_version(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    line = ledger_entry(1).model_dump(mode="json")
    del line["version"], line["kind"], line["metric"], line["quality"], line["metrics"]
    line.update(accuracy=0.875, f1_macro=0.5, distill={"best_val_accuracy": 0.86, "epochs": 1})
    path.write_text(json.dumps(line) + "\n")
    (entry,) = read_ledger(path)
    assert (entry.version, entry.kind, entry.name) == (VERSION, "step", "step 1 try 1")
    assert (entry.metric, entry.quality, entry.metrics) == ("accuracy", 0.875, {"accuracy": 0.875, "f1_macro": 0.5})
    assert entry.distill.best_val_quality == 0.86


@pytest.mark.parametrize("version", [VERSION + 1, 0, "2", True])
def test_a_line_of_an_unknown_version_is_refused_with_one_line(tmp_path: Path, version):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, ledger_entry(1))
    with open(path, "a") as handle:
        handle.write(json.dumps({**ledger_entry(2).model_dump(mode="json"), "version": version}) + "\n")
    with pytest.raises(InputError, match=f"line 2 is of ledger version {version!r}; this spiral reads versions 1 to"):
        read_ledger(path)


@pytest.mark.parametrize("change, field", [
    ({"accepted": "perhaps"}, "accepted"),
    ({"kind": "prune"}, "kind"),
    ({"kind": ["step"]}, "kind"),
    ({"message": "a try's line has none"}, "message"),
    ({"unknown": 1}, "unknown"),
    ({"distill": {"epochs": "two", "best_val_quality": None}}, "distill.epochs"),
])
def test_a_line_that_is_not_a_ledger_entry_is_refused_naming_the_field(tmp_path: Path, change, field):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({**ledger_entry(1).model_dump(mode="json"), **change}) + "\n")
    with pytest.raises(InputError, match=rf"line 1 is not a ledger entry \({field}: "):
        read_ledger(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r"line 1 is not a ledger entry \(a JSON object with a string 'dir'\)"):
        read_ledger(path)


def test_a_required_field_missing_is_refused(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    line = ledger_entry(1).model_dump(mode="json")
    del line["quality"]
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=r"line 1 is not a ledger entry \(quality: Field required\)"):
        read_ledger(path)


def test_every_kind_has_its_name():
    assert set(OWN_FIELDS) == set(PASSES)
    names = {kind: ledger_entry(2, 3, kind=kind).name for kind in PASSES}
    assert names == {"step": "step 2 try 3", "recovery": "final recovery", "quantize": "INT8 quantization"}
    assert ledger_entry(kind="recovery").to_json()["name"] == "final recovery"
