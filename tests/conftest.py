"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiny_spiral import tiny_config


@pytest.fixture
def write_config(tmp_path: Path):
    def write(**overrides: object) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(tiny_config(**overrides)))
        return path

    return write
