from pathlib import Path

import pytest
import yaml

from tiny_spiral import tiny_config
from spiral.deploy.errors import InputError
from spiral.pipeline.config import load_config, parse_config


def test_tiny_config_is_valid():
    config = parse_config(tiny_config())
    assert config.target.backend == "ort-cpu"
    assert config.budget.max_ms == 1000.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"budgett": {}}, "unknown key 'budgett'; did you mean 'budget'?"),
        ({"budget": {"max_mss": 3}}, "unknown key 'budget.max_mss'; did you mean 'max_ms'?"),
        ({"schedule": {"patiense": 1}}, "did you mean 'patience'?"),
        ({"distill": {"temprature": 2}}, "did you mean 'temperature'?"),
        ({"budget": {"max_ms": float("inf")}}, "budget.max_ms: budget value must be a finite number > 0"),
        ({"budget": {"max_ms": -1.0}}, "must be a finite number > 0, got -1.0"),
        ({"budget": {"min_speedup": float("nan")}}, "budget.min_speedup"),
        ({"budget": {"min_throughput": 0}}, "budget.min_throughput: budget value must be a finite number > 0"),
        ({"budget": {"accuracy": {"max_drop": -2}}}, "budget.accuracy.max_drop: Input should be greater than or equal to 0"),
        ({"budget": {"accuracy": {"max_drop": 120}}}, "budget.accuracy.max_drop: accuracy is in percent; 120.0 is not between"),
        ({"budget": {"accuracy": {"min": 90}, "metric": {"max_drop": 1}}}, "accuracy is classification's spelling of metric"),
        ({"budget": {"accuracy": None, "metric": {"name": "miou", "max_drop": 1}}}, "task classification measures accuracy, precision_macro"),
        ({"task": {"kind": "segmentation"}, "budget": {"accuracy": None, "metric": {"max": 60}}}, "miou is higher-is-better; its limit is min"),
        ({"task": {"kind": "custom", "loss": "a:b"}}, "task custom needs metric"),
        ({"task": {"kind": "segmentation", "postprocess": "a:b"}}, "task.postprocess is for task detection"),
        ({"budget": {"max_ms": None, "min_speedup": None}}, "budget needs max_ms, min_speedup or min_throughput"),
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
        ({"distributed": {"nnodes": 2}}, "distributed: nnodes 2 needs rdzv_endpoint (host:port every node reaches)"),
        ({"distributed": {"node_rank": 1}}, "distributed: node_rank 1 is not below nnodes 1"),
        ({"distributed": {"nnodes": 2, "node_rank": -1, "rdzv_endpoint": "n0:29500"}}, "distributed.node_rank: Input should be greater"),
        ({"distributed": {"procs": 2}}, "unknown key 'distributed.procs'; did you mean 'processes'?"),
    ],
)
def test_bad_configs_name_the_key(data, expected):
    with pytest.raises(InputError) as info:
        parse_config(tiny_config(**data), "c.yaml")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_where_a_run_trains_is_not_part_of_it():
    """``distributed:`` is left out of config.json: a run resumes on other processes or nodes."""
    config = parse_config(tiny_config(distributed={"processes": 2, "nnodes": 2, "rdzv_endpoint": "n0:29500"}))
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
