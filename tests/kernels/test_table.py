from __future__ import annotations

import json
from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
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


def test_an_operator_is_timed_on_the_rounds_that_ran_on_a_free_cpu() -> None:
    """Rounds whose threads waited for a CPU past ``max_cpu_wait`` are left out, as the judge leaves
    them out; where the wait is unknown every round counts; none free: no value."""
    from spiralprune.deploy.profiler import Measurement
    from spiralprune.kernels.table import free_statistic

    def measurement(waits: list[float | None]) -> Measurement:
        return Measurement(batch=1, input_shapes={}, warmup_iterations=0, warmup_s=0.0,
                           samples_ms=[5.0, 5.5, 1.0, 1.2, 9.0, 9.5], stats={}, stable=True, stop_reason="",
                           throughput_per_s=0.0, round_sizes=[2, 2, 2], cpu_wait=waits)

    assert free_statistic(measurement([0.6, 0.0, 0.9]), 0.2) == 1.0
    assert free_statistic(measurement([0.0, 0.5, 0.1]), 0.2) == 5.0
    assert free_statistic(measurement([None, None, None]), 0.2) == 1.0
    assert free_statistic(measurement([0.3, 0.4, 0.9]), 0.2) is None


class BusyTable(LatencyTable):
    """An operator table on a machine whose CPUs are busy while ``busy`` operators are timed: their
    timings found no free round (``_time``'s second value), the rest did."""

    busy_keys: set[str] = set()

    def _time(self, op):
        key = CALL_OVERHEAD_KEY if op is None else op.key()
        return (3.0 if key in self.busy_keys else 1.0), key not in self.busy_keys


def test_an_operator_timed_only_on_a_busy_cpu_is_used_but_not_saved(tmp_path: Path) -> None:
    """A table keeps what it saves for every later run on the target: a timing inflated by other
    processes must not outlive the run that took it; the next table times it again."""
    other = Linear((1,), 8, 4)
    busy = BusyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    busy.busy_keys = {other.key()}
    assert busy.latencies([SMALL, other]) == [0.0, 2.0]
    assert set(json.loads(busy.path.read_text())["entries"]) == {SMALL.key(), CALL_OVERHEAD_KEY}
    quiet = BusyTable("ort-cpu", threads=1, cache_dir=tmp_path)
    assert quiet.latencies([SMALL, other]) == [0.0, 0.0] and (quiet.hits, quiet.misses) == (1, 1)
    assert set(json.loads(quiet.path.read_text())["entries"]) == {SMALL.key(), other.key(), CALL_OVERHEAD_KEY}
    # A busy table's own entry gives way to a free one another run saved meanwhile.
    busy.latencies([Conv(1, 4, 8, 8, 8)])
    assert busy.latency(other) == 0.0
