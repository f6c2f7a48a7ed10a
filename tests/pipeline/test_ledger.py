import json
from pathlib import Path

import pytest

from spiralprune import __version__
from spiralprune.deploy.errors import InputError
from spiralprune.pipeline.ledger import VERSION, LedgerEntry, append_entry, read_ledger, repair_ledger
from tests.ledger_entries import ledger_entry


def test_append_and_read(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    written = [ledger_entry(1), ledger_entry(2, accepted=False, kind="recovery", message="stopped")]
    for entry in written:
        append_entry(path, entry)
    assert read_ledger(path) == [e.model_copy(update={"spiral": __version__}) for e in written]  # who wrote it
    assert all(json.loads(line)["version"] == VERSION for line in path.read_text().splitlines())


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


def test_a_line_without_a_version_or_kind_is_a_version_1_step_read_as_version_2(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    line = ledger_entry(1).model_dump(mode="json")
    del line["version"], line["kind"], line["metric"], line["quality"], line["metrics"]
    line.update(accuracy=0.875, f1_macro=0.5, distill={"best_val_accuracy": 0.86, "epochs": 1})
    path.write_text(json.dumps(line) + "\n")
    (entry,) = read_ledger(path)
    assert (entry.version, entry.kind, entry.name) == (2, "step", "step 1 try 1")
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
    names = {kind: ledger_entry(2, 3, kind=kind).name for kind in LedgerEntry.model_fields["kind"].annotation.__args__}
    assert names == {"step": "step 2 try 3", "recovery": "final recovery", "quantize": "INT8 quantization"}
    assert ledger_entry(kind="recovery").to_json()["name"] == "final recovery"
