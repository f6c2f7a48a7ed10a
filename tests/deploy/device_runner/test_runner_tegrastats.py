"""``deploy/device_runner/tegrastats.py``: real tegrastats lines published by Jetson users
(tests/fixtures/jetson/README.md), JetPack 4 to 6."""

from __future__ import annotations

import pytest

from spiralprune.deploy.device_runner.tegrastats import parse_tegrastats
from tests.deploy.device_runner.runner_bundles import JETSON


def test_tegrastats_agx_orin_jetpack6() -> None:
    s = parse_tegrastats((JETSON / "tegrastats-agx-orin-64gb-jetpack6.txt").read_text())
    assert s["samples"] == 1
    assert s["ram_used_mb"] == {"mean": 4321.0, "max": 4321.0} and s["ram_total_mb"] == 62801.0
    assert s["cpu_load_pct"]["max"] == 0.0
    assert s["gpu_load_pct"]["max"] == 0.0 and s["gpu_freq_mhz"]["max"] == 0.0
    assert s["temperature_c"]["CPU"] == 44.562 and s["temperature_c"]["tj"] == 44.343
    assert "GPU" not in s["temperature_c"] and "CV0" not in s["temperature_c"]  # -256C: no sensor
    assert s["power_mw"]["VDD_GPU_SOC"]["mean"] == 2340.0 and s["power_mw"]["VIN_SYS_5V0"]["max"] == 4025.0
    assert "NC" not in s["power_mw"]


def test_tegrastats_jetpack46_several_lines() -> None:
    s = parse_tegrastats((JETSON / "tegrastats-jetpack4.6.txt").read_text())
    assert s["samples"] == 6
    assert s["ram_used_mb"]["max"] == 1689.0
    # Mean core load per line (two cores off): 1.25, 1.0, 0.5, 1.0, 0.75, 1.5 %.
    assert s["cpu_load_pct"] == {"mean": pytest.approx(1.0), "max": pytest.approx(1.5)}
    assert s["gpu_load_pct"] == {"mean": 0.0, "max": 0.0} and s["gpu_freq_mhz"] is None
    assert s["temperature_c"]["thermal"] == 50.3 and s["power_mw"] == {}


def test_tegrastats_tx2_rails_without_units() -> None:
    s = parse_tegrastats((JETSON / "tegrastats-tx2-2019.txt").read_text())
    assert s["power_mw"]["VDD_IN"] == {"mean": 3140.0, "max": 3140.0}
    assert s["power_mw"]["VDD_SYS_GPU"]["max"] == 153.0 and "RAM" not in s["power_mw"]
    assert s["cpu_load_pct"]["max"] == pytest.approx(60 / 6)


def test_tegrastats_without_samples() -> None:
    assert parse_tegrastats("") is None
