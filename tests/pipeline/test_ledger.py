from pathlib import Path

from pipeline.ledger import append_entry, read_ledger, repair_ledger


def test_append_and_read(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, {"step": 1})
    append_entry(path, {"step": 2})
    assert read_ledger(path) == [{"step": 1}, {"step": 2}]


def test_truncated_last_line_is_dropped_and_repaired(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    append_entry(path, {"step": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"step": 2, "acc')  # a write killed halfway
    assert read_ledger(path) == [{"step": 1}]
    repair_ledger(path)
    assert path.read_bytes().endswith(b"}\n")
    append_entry(path, {"step": 2})
    assert read_ledger(path) == [{"step": 1}, {"step": 2}]


def test_missing_ledger_is_empty(tmp_path: Path):
    assert read_ledger(tmp_path / "none.jsonl") == []
