"""``deploy/device_runner/power.py``: the power state the target expects, against real ``nvpmodel -q`` output."""

from __future__ import annotations

import pytest

from spiralprune.deploy.device_runner.errors import DeviceError
from spiralprune.deploy.device_runner.facts import parse_nvpmodel
from spiralprune.deploy.device_runner.power import check_power
from tests.deploy.device_runner.runner_bundles import JETSON


def _facts(mode: dict | None, clocks: bool | None) -> dict:
    return {"power_mode": mode, "clocks": {"jetson_clocks": clocks}}


def test_power_mode_matches() -> None:
    check_power({"nvpmodel_id": 2, "nvpmodel_name": "MODE_30W", "jetson_clocks": True},
                _facts(parse_nvpmodel((JETSON / "nvpmodel-q-agx-orin-mode_30w.txt").read_text()), True))


def test_wrong_power_mode_is_refused_with_the_fix() -> None:
    facts = _facts(parse_nvpmodel((JETSON / "nvpmodel-q-agx-orin-mode_30w.txt").read_text()), True)
    with pytest.raises(DeviceError, match=r"power mode MODE_30W \(id 2\).*sudo nvpmodel -m 0") as info:
        check_power({"nvpmodel_id": 0, "nvpmodel_name": "MAXN", "jetson_clocks": True}, facts)
    assert info.value.kind == "power-mode"


def test_jetson_clocks_off_is_refused() -> None:
    with pytest.raises(DeviceError, match="jetson_clocks is off.*sudo jetson_clocks"):
        check_power({"nvpmodel_id": None, "nvpmodel_name": None, "jetson_clocks": True}, _facts(None, False))


def test_expected_power_mode_without_nvpmodel() -> None:
    with pytest.raises(DeviceError, match="no nvpmodel") as info:
        check_power({"nvpmodel_id": 0, "nvpmodel_name": None, "jetson_clocks": None}, _facts(None, None))
    assert info.value.kind == "missing-tool"


def test_no_expectation_checks_nothing() -> None:
    check_power(None, _facts(None, None))
