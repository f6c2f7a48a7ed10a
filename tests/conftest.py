"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiny_spiral import tiny_config


@pytest.fixture(scope="session", autouse=True)
def kernels_cache(tmp_path_factory: pytest.TempPathFactory):
    """Operator latency tables built by the tests stay out of the user's cache, as on a fresh machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPIRAL_KERNELS_CACHE", str(tmp_path_factory.mktemp("kernels-cache")))
        yield


@pytest.fixture
def write_config(tmp_path: Path):
    def write(**overrides: object) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(tiny_config(**overrides)))
        return path

    return write
