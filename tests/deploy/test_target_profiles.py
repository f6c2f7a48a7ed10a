"""Target profiles: every shipped target loads, its budget is a valid gate budget, and bad files fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spiralprune.core.errors import InputError
from spiralprune.deploy.target_profiles import ALIASES, DEFAULT_TRTEXEC, list_targets, load_target, parse_target
from spiralprune.pipeline.gate.budget import parse_budget

SHIPPED = ["jetson-agx-orin", "jetson-orin-nano", "local-cpu", "x86-gpu"]


def minimal(**overrides: object) -> dict:
    data = {"name": "t", "backend": "ort-cpu", "budget": {"latency": {"max_ms": 5.0}}}
    data.update(overrides)
    return data


def test_the_four_targets_ship() -> None:
    assert list_targets() == SHIPPED


@pytest.mark.parametrize("name", list_targets())
def test_shipped_target_is_valid_and_its_budget_is_a_gate_budget(name: str) -> None:
    target = load_target(name)
    assert target.name == name
    budget = parse_budget(target.budget.model_dump(mode="json"), name)
    assert budget.latency is not None and budget.latency.max_ms == target.budget.latency.max_ms
    assert target.measure.profile.max_duration_s >= target.measure.profile.min_duration_s
    if target.backend == "trtexec":
        assert target.trtexec is not None and target.trtexec.tensorrt


def test_jetson_targets_expect_trtexec_power_mode_and_jetpack_5_and_6() -> None:
    for name in ("jetson-orin-nano", "jetson-agx-orin"):
        target = load_target(name)
        assert target.backend == "trtexec" and target.trtexec.path == DEFAULT_TRTEXEC
        assert target.trtexec.tensorrt == ["8.5", "10.3"]  # JetPack 5.1 and 6.x
        assert target.power is not None and target.power.nvpmodel_id == 0 and target.power.jetson_clocks is True
    assert load_target("x86-gpu").trtexec.tensorrt == ["10", "11"]


def test_jetson_alias_means_orin_nano_and_host_is_overridable() -> None:
    assert ALIASES["jetson"] == "jetson-orin-nano"
    target = load_target("jetson", host_override="orin.lan")
    assert target.name == "jetson-orin-nano" and target.host == "orin.lan"


def test_a_target_without_host_says_to_pass_one() -> None:
    with pytest.raises(InputError, match="names no host: pass --host"):
        load_target("jetson-orin-nano").host


def test_unknown_target_suggests_the_nearest() -> None:
    with pytest.raises(InputError, match="unknown target 'jetson-orin-nan'; did you mean 'jetson-orin-nano'"):
        load_target("jetson-orin-nan")


def test_target_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(minimal(name="mine", ssh={"host": "box", "user": "me", "port": 2222})))
    target = load_target(str(path))
    assert (target.name, target.host, target.ssh.user, target.ssh.port) == ("mine", "box", "me", 2222)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(bakend="ort-cpu"), "unknown key 'bakend'; did you mean 'backend'"),
        (minimal(ssh={"hots": "x"}), "unknown key 'ssh.hots'; did you mean 'host'"),
        (minimal(backend="tensorrt"), "backend"),
        (minimal(budget={"latency": {"max_ms": -1}}), "budget.latency.max_ms: Input should be greater than 0"),
        (minimal(budget={"latency": {"statistic": "p50"}}), "budget.latency: latency needs max_ms"),
        (minimal(budget={"latency": {"min_speedup": 2}}), "budget.latency.min_speedup: a device is measured alone"),
        (minimal(budget={"latency": {"max_ms": 5}, "accuracy": {"min": 90}}), "budget.accuracy: a device is measured alone"),
        (minimal(trtexec={"path": "/x"}), "only for backend: trtexec"),
        (minimal(precision="fp16"), "precision must be fp32"),
        (minimal(backend="trtexec", trtexec={"dla": {"core": 0}}), "DLA runs fp16 or int8 only"),
        (minimal(backend="trtexec", trtexec={"tensorrt": ["ten"]}), "must be MAJOR or MAJOR.MINOR"),
        (minimal(ssh={"options": ["-o", "StrictHostKeyChecking=no"]}), "disables host key checking"),
        (minimal(ssh={"options": ["-o", "UserKnownHostsFile /dev/null"]}), "disables host key checking"),
        (minimal(ssh={"options": ["-p", "22"]}), "ssh option '-p' is not accepted"),
        (minimal(ssh={"options": ["-i"]}), "needs a value"),
        (minimal(remote={"dir": "../elsewhere"}), "without '..'"),
        (minimal(measure={"profile": {"min_duration_s": 5, "max_duration_s": 1}}), "max_duration_s must be positive and at least"),
        (minimal(measure={"min_samples": 50}), "measure.min_samples"),
        (minimal(budget={"latency": {"max_ms": 5}, "stability": {"max_cv": 0.1}}), "budget.stability"),
        (minimal(version=2), "target version 2 is not supported"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_targets_fail_in_one_line(data: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_target(data, "t.yaml")
    assert "\n" not in str(info.value)


def test_ssh_options_pass_through(tmp_path: Path) -> None:
    options = ["-F", "~/.ssh/config", "-i", "~/.ssh/id_ed25519", "-J", "bastion", "-o", "ServerAliveInterval=5", "-4"]
    assert parse_target(minimal(ssh={"host": "h", "options": options}), "t").ssh.options == options


def test_trtexec_defaults_are_filled_in() -> None:
    target = parse_target(minimal(backend="trtexec", precision="fp16"), "t")
    assert target.trtexec.path == DEFAULT_TRTEXEC and target.trtexec.dla is None


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_target(str(bad))
    with pytest.raises(InputError, match="cannot read target"):
        load_target(str(tmp_path / "absent.yaml"))


def test_host_override_refuses_an_option_lookalike() -> None:
    with pytest.raises(InputError, match="not a host name"):
        load_target("local-cpu", host_override="-oProxyCommand=evil")
