"""``deploy/device_runner/runtimes.py``: which of the manifest's TensorRT versions this device's trtexec matches."""

from __future__ import annotations

import pytest

from spiralprune.deploy.device_runner.runtimes import version_matches


@pytest.mark.parametrize(
    ("version", "supported", "matches"),
    [((8, 5, 2), "8.5", True), ((10, 3, 0), "10.3", True), ((10, 7, 0), "10", True), ((10, 3, 0), "8.5", False),
     ((11, 0, 1), "10", False), ((10, 30, 0), "10.3", False)],
)
def test_tensorrt_version_matching(version: tuple[int, int, int], supported: str, matches: bool) -> None:
    assert version_matches(version, supported) is matches
