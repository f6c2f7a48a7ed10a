import json
from pathlib import Path

import pytest

from deploy.errors import InputError
from pipeline.ledger import VERSION, append_entry, read_ledger, repair_ledger


def test_append_and_read(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, {"step": 1})
    append_entry(path, {"step": 2})
    assert read_ledger(path) == [{"step": 1, "version": VERSION}, {"step": 2, "version": VERSION}]


def test_truncated_last_line_is_dropped_and_repaired(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, {"step": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"step": 2, "acc')  # a write killed halfway
    assert [e["step"] for e in read_ledger(path)] == [1]
    repair_ledger(path)
    assert path.read_bytes().endswith(b"}\n")
    append_entry(path, {"step": 2})
    assert [e["step"] for e in read_ledger(path)] == [1, 2]


def test_missing_ledger_is_empty(tmp_path: Path):
    assert read_ledger(tmp_path / "none.jsonl") == []


def test_a_line_without_a_version_is_version_1(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n")
    assert read_ledger(path) == [{"step": 1}]


@pytest.mark.parametrize("version", [VERSION + 1, 0, "2", True])
def test_a_line_of_an_unknown_version_is_refused_with_one_line(tmp_path: Path, version):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, {"step": 1})
    with open(path, "a") as handle:
        handle.write(json.dumps({"step": 2, "version": version}) + "\n")
    with pytest.raises(InputError, match=f"line 2 is of ledger version {version!r}; this spiral reads versions 1 to"):
        read_ledger(path)
