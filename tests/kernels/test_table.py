from __future__ import annotations

import json
from pathlib import Path

import pytest

from spiralprune.deploy.errors import InputError
from spiralprune.kernels.ops import Conv, Linear
from spiralprune.kernels.table import CALL_OVERHEAD_KEY, LatencyTable, fingerprint_digest, stable_fingerprint

SMALL = Conv(1, 4, 8, 8, 8, padding=(1, 1, 1, 1))


def test_miss_times_and_saves_then_a_new_table_hits(tmp_path: Path) -> None:
    first = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    ms = first.latency(SMALL)
    assert ms >= 0 and (first.hits, first.misses) == (0, 1)
    saved = json.loads(first.path.read_text())
    assert set(saved["entries"]) == {SMALL.key(), CALL_OVERHEAD_KEY}
    assert saved["fingerprint"] == first.fingerprint

    again = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    assert again.latency(SMALL) == ms
    assert (again.hits, again.misses) == (1, 0)


def test_file_is_keyed_by_the_target_fingerprint(tmp_path: Path) -> None:
    one = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    two = LatencyTable("ort-cpu", threads=2, cache_dir=tmp_path)
    fp32 = stable_fingerprint("ort-cpu", threads=1, precision="fp32")
    assert one.path.name == f"ort-cpu-{fingerprint_digest(fp32)}.json"
    assert one.path != two.path
    assert one.fingerprint["threads"] == 1 and "onnxruntime" in one.fingerprint["libraries"]
    assert {"cpu", "backend", "precision", "libraries"} <= set(one.fingerprint)
    assert LatencyTable("ort-cpu", threads=1, precision="int8", cache_dir=tmp_path).path != one.path


def test_fingerprint_ignores_whether_torch_was_imported() -> None:
    import torch  # noqa: F401 - imported on purpose: the ONNX target's key must not depend on it

    assert "torch" not in stable_fingerprint("ort-cpu", threads=1, precision="fp32")["libraries"]


def test_concurrent_tables_merge_their_entries(tmp_path: Path) -> None:
    a = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    b = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    other = Linear((1,), 8, 4)
    a.latency(SMALL)
    b.latency(other)
    entries = json.loads(a.path.read_text())["entries"]
    assert {SMALL.key(), other.key()} <= set(entries)
    assert not list(tmp_path.glob(".*.tmp"))


def test_staircase_times_each_count(table: LatencyTable) -> None:
    steps = table.staircase(SMALL, [8, 6, 4], side="out")
    assert [count for count, _ in steps] == [8, 6, 4]
    assert [ms for _, ms in steps] == table.latencies([SMALL.resized(out_channels=c) for c in (8, 6, 4)])
    with pytest.raises(InputError, match="side"):
        table.staircase(SMALL, [4], side="both")


def test_corrupt_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    table = LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    table.path.parent.mkdir(parents=True, exist_ok=True)
    table.path.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    table.path.write_text(json.dumps({"fingerprint": {"cpu": "elsewhere"}, "entries": {}}))
    with pytest.raises(InputError, match="another target"):
        LatencyTable("ort-cpu", threads=1, cache_dir=tmp_path)


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown backend"):
        LatencyTable("no-such-backend", cache_dir=tmp_path)
