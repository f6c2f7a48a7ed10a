"""The trtexec parser on real transcripts (tests/fixtures/trtexec/README.md names their sources)."""

import json
from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.trtexec_parse import parse_export_times, parse_summary, parse_version

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trtexec"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_version_tags_of_8x_and_10x():
    assert parse_version(read("trtexec-8.4.1-efficientdet-plugin.log")) == (8, 4, 1)
    assert parse_version(read("trtexec-10.16.0-model-trained.log")) == (10, 16, 0)
    assert parse_version("&&&& RUNNING TensorRT.trtexec [TensorRT v100700] [b23] # trtexec") == (10, 7, 0)
    assert parse_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec") == (8, 6, 1)
    with pytest.raises(InputError, match="TensorRT vNNNN"):
        parse_version("bash: trtexec: command not found")


def test_8x_summary_with_one_percentile_and_the_unstable_warning():
    s = parse_summary(read("trtexec-8.4.1-efficientdet-plugin.log"))
    assert s.throughput_qps == 233.689
    assert s.walltime_s == 3.01255
    assert s.unstable_cv_percent == 2.9705
    assert set(s.metrics) == {"Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"}
    assert s.metrics["GPU Compute Time"] == {
        "min": 4.23773, "max": 5.25439, "mean": 4.26986, "median": 4.25195, "p99": 5.24138
    }
    assert s.warmup_queries is None  # the excerpt starts at the summary


def test_10x_summary_with_three_percentiles_and_trace_counts():
    s = parse_summary(read("trtexec-10.16.0-model-trained.log"))
    assert s.throughput_qps == 18392
    assert s.unstable_cv_percent == 62.0202
    assert (s.warmup_queries, s.warmup_ms, s.timed_queries) == (3349, 200.0, 55177)
    assert s.metrics["Latency"] == {
        "min": 0.0334473, "max": 0.882324, "mean": 0.0431899, "median": 0.0386963,
        "p90": 0.0480957, "p95": 0.0548096, "p99": 0.144043,
    }
    assert s.metrics["D2H Latency"]["p95"] == 0.00720215


def test_summary_missing_is_an_input_error():
    with pytest.raises(InputError, match="Performance summary"):
        parse_summary("[I] Engine built in 3.1 sec.\n&&&& PASSED")


def _export_times_like_trtexec(n: int) -> str:
    """A file in exportJSONTrace's layout (see the fixtures README: no real one was found)."""
    lines, sep = ["["], "  "
    for i in range(n):
        t = 10.0 * i
        lines.append(
            f'{sep}{{ "startEnqMs" : {t}, "endEnqMs" : {t + 0.1}, "startH2dMs" : {t}, "endH2dMs" : {t + 0.01}, '
            f'"startComputeMs" : {t + 0.01}, "endComputeMs" : {t + 1.01 + i}, "startD2hMs" : {t + 1.01 + i}, '
            f'"endD2hMs" : {t + 1.02 + i}, "h2dMs" : 0.01, "computeMs" : {1.0 + i}, "d2hMs" : 0.01, '
            f'"latencyMs" : {1.02 + i}, "endToEndMs" : {1.02 + i} }}'
        )
        sep = ", "
    lines.append("]")
    return "\n".join(lines) + "\n"


def test_export_times_drops_the_warmups():
    text = _export_times_like_trtexec(5)
    assert json.loads(text)[0]["computeMs"] == 1.0
    records = parse_export_times(text, skip=2)
    assert [r["computeMs"] for r in records] == [3.0, 4.0, 5.0]
    assert records[0]["latencyMs"] == 3.02


@pytest.mark.parametrize(
    "text, message", [("{", "not JSON"), ('{"a": 1}', "not a list"), ("[]", "none after 0 warm-ups")]
)
def test_export_times_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_export_times(text)
