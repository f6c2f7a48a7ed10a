from pathlib import Path

import pytest
import yaml

from tiny_spiral import tiny_config
from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import load_config, parse_config


def test_tiny_config_is_valid():
    config = parse_config(tiny_config())
    assert config.target.backend == "ort-cpu"
    assert config.budget.latency.max_ms == 1000.0 and config.version == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"budgett": {}}, "unknown key 'budgett'; did you mean 'budget'?"),
        ({"budget": {"latency": {"max_mss": 3}}}, "unknown key 'budget.latency.max_mss'; did you mean 'max_ms'?"),
        ({"budget": {"max_ms": 3}}, "unknown key 'budget.max_ms'"),
        ({"schedule": {"patiense": 1}}, "did you mean 'patience'?"),
        ({"distill": {"temprature": 2}}, "did you mean 'temperature'?"),
        ({"budget": {"latency": {"max_ms": float("inf")}}}, "budget.latency.max_ms: Input should be a finite number"),
        ({"budget": {"latency": {"max_ms": -1.0}}}, "budget.latency.max_ms: Input should be greater than 0"),
        ({"budget": {"latency": {"min_speedup": float("nan")}}}, "budget.latency.min_speedup"),
        ({"budget": {"latency": {"min_throughput": 0}}}, "budget.latency.min_throughput: Input should be greater than 0"),
        ({"budget": {"latency": {"max_ms": None, "max_regression_pct": 5}}}, "a run works toward min_speedup, max_ms or min_throughput"),
        ({"budget": {"latency": {"max_regression_pct": 5}}}, "budget.latency.max_regression_pct: a run's reference is its teacher"),
        ({"budget": {"latency": None}}, "budget.latency: a run works toward min_speedup, max_ms or min_throughput"),
        ({"quantize": {"budget": {"latency": {"max_ms": 1}}}}, "quantize.budget.latency.max_ms: the INT8 stage judges"),
        ({"quantize": {"budget": {"parity": {"atol": 1}}}}, "quantize.budget.parity: the INT8 stage judges"),
        ({"budget": {"accuracy": {"max_drop": -2}}}, "budget.accuracy.max_drop: Input should be greater than or equal to 0"),
        ({"budget": {"accuracy": {"max_drop": 120}}}, "budget.accuracy.max_drop: accuracy is in percent; 120.0 is not between"),
        ({"budget": {"accuracy": {"min": 90}, "metric": {"max_drop": 1}}}, "accuracy is classification's spelling of metric"),
        ({"budget": {"accuracy": None, "metric": {"name": "miou", "max_drop": 1}}}, "task classification measures accuracy, precision_macro"),
        ({"task": {"kind": "segmentation"}, "budget": {"accuracy": None, "metric": {"max": 60}}}, "miou is higher-is-better; its limit is min"),
        ({"task": {"kind": "custom", "loss": "a:b"}}, "task custom needs metric"),
        ({"task": {"kind": "detection"}}, "task detection needs postprocess"),
        ({"task": {"kind": "segmentation", "postprocess": "a:b"}}, "task.postprocess is for task detection"),
        ({"budget": {"latency": {"max_ms": None}}}, "latency needs max_ms, min_throughput, min_speedup or max_regression_pct"),
        ({"input_shape": [1, 0, 16]}, "input_shape must be positive dimensions"),
        ({"version": 7}, "config version 7 is not supported"),
        ({"schedule": {"allocation": "flops"}}, "schedule.allocation"),
        ({"prune": {"per_layer": {"layer1": 0.5}}}, "set schedule.allocation: uniform to use them"),
        ({"prune": {"global_pruning": True}}, "set schedule.allocation: uniform to use them"),
        ({"target": {"backend": "tpu"}}, "unknown backend 'tpu'"),
        ({"target": {"device": "cuda"}}, "target.device is for the torch targets; backend 'ort-cpu'"),
        ({"target": {"backend": "torch", "compile_mode": "max-autotune"}}, "target.compile_mode is for backend 'torch-compile'"),
        ({"target": {"device": "tpu"}}, "target.device"),
        ({"target": {"spin_wait": True}}, "target.spin_wait is for the torch targets, not 'ort-cpu'"),
        ({"target": {"backend": "torch", "spin_wait": True}}, "target.spin_wait waits on a CUDA event: it needs target.device: cuda"),
        ({"distributed": {"processes": 0}}, "distributed.processes: Input should be greater than or equal to 1"),
        ({"distributed": {"device": "tpu"}}, "distributed.device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"distributed": {"nnodes": 2}}, "distributed: nnodes 2 needs rdzv_endpoint (host:port every node reaches)"),
        ({"distributed": {"node_rank": 1}}, "distributed: node_rank 1 is not below nnodes 1"),
        ({"distributed": {"nnodes": 2, "node_rank": -1, "rdzv_endpoint": "n0:29500"}}, "distributed.node_rank: Input should be greater"),
        ({"distributed": {"procs": 2}}, "unknown key 'distributed.procs'; did you mean 'processes'?"),
        ({"distributed": {"nnodes": 2, "rdzv_endpoint": "n0"}}, "distributed.rdzv_endpoint: 'n0' is not HOST:PORT"),
        ({"distributed": {"nnodes": 2, "rdzv_endpoint": ":29500"}}, "distributed.rdzv_endpoint: ':29500' is not HOST:PORT"),
        ({"distributed": {"nnodes": 2, "rdzv_endpoint": "n0:http"}}, "distributed.rdzv_endpoint: 'n0:http' is not HOST:PORT"),
        ({"distributed": {"nnodes": 2, "rdzv_endpoint": "n0:70000"}}, "'n0:70000': port 70000 is not between 1 and 65535"),
        ({"distributed": {"join_timeout_s": 0}}, "distributed.join_timeout_s: Input should be greater than or equal to 1"),
    ],
)
def test_bad_configs_name_the_key(data, expected):
    with pytest.raises(InputError) as info:
        parse_config(tiny_config(**data), "c.yaml")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_where_a_run_trains_is_not_part_of_it():
    """``distributed:`` is left out of config.json: a run resumes on other processes or nodes."""
    config = parse_config(tiny_config(distributed={"processes": 2, "nnodes": 2, "rdzv_endpoint": "[fe80::1]:29500"}))
    assert not config.distributed.in_process and parse_config(tiny_config()).distributed.in_process
    assert "distributed" not in config.model_dump(mode="json")


def test_torch_targets_take_their_device_and_compile_mode():
    compiled = parse_config(tiny_config(target={"backend": "torch-compile", "device": "cuda", "compile_mode": "reduce-overhead"}))
    assert compiled.target.backend_options() == {"device": "cuda", "mode": "reduce-overhead"}
    assert compiled.target.runs_live_module
    assert parse_config(tiny_config(target={"backend": "torch"})).target.backend_options() == {"device": "cpu"}
    onnx = parse_config(tiny_config()).target
    assert onnx.backend_options() == {} and not onnx.runs_live_module
    spinning = parse_config(tiny_config(target={"backend": "torch", "device": "cuda", "spin_wait": True})).target
    assert spinning.backend_options() == {"device": "cuda", "spin_wait": True}


def test_load_config_errors(tmp_path: Path):
    with pytest.raises(InputError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(scalar)


def test_yaml_is_loaded_safely(tmp_path: Path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['true']\ninput_shape: [1,1,16,16]\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(evil)


def test_round_trip(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    config = load_config(path)
    assert parse_config(config.model_dump(mode="json")) == config


def test_a_version_1_config_is_read_in_version_2_s_keys():
    """Version 1 wrote the latency limits flat in ``budget:``, the size as ``max_size_mb``, ``parity:`` at
    the top and the INT8 stage's limits flat in ``quantize:``; the one budget type
    (``spiralprune.deploy.budget.Budget``) holds them all, and old configs and run folders still read."""
    old = {key: value for key, value in tiny_config().items() if key not in ("budget", "version")}
    v1 = parse_config({**old, "version": 1, "parity": {"samples": 8},
                       "budget": {"statistic": "p90", "max_ms": 5.0, "max_size_mb": 2.0, "accuracy": {"max_drop": 0.5}},
                       "quantize": {"max_drop": 2.0, "method": "entropy"}})
    v2 = parse_config({**old, "version": 2, "quantize": {"method": "entropy", "budget": {
                           "latency": {"min_speedup": 1.0}, "metric": {"max_drop": 2.0}}},
                       "budget": {"latency": {"statistic": "p90", "max_ms": 5.0, "min_speedup": 2.0},
                                  "size": {"max_mb": 2.0}, "accuracy": {"max_drop": 0.5}, "parity": {"samples": 8}}})
    assert v1 == v2 and v1.version == 2
    # Version 1's default min_speedup (2.0) is made explicit; one set to null stays off.
    assert parse_config({**old, "budget": {"max_ms": 5.0, "min_speedup": None}}).budget.latency.min_speedup is None
    # What a run always judges, filled: the metric at most 1 point below the teacher, parity at default tolerances.
    default = parse_config(old)
    assert default.budget.quality.max_drop == 1.0 and default.budget.parity.samples == 256
    assert parse_config(default.model_dump(mode="json")) == default
    assert (default.quantize, v1.quantize.max_drop, v1.quantize.min_speedup) == (None, 2.0, 1.0)
