"""A latency table shared by the kernels tests of one session, so each operator is timed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.kernels.table import LatencyTable


@pytest.fixture(scope="session")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("latency-table")


@pytest.fixture(scope="session")
def table(table_dir: Path) -> LatencyTable:
    return LatencyTable("ort-cpu", threads=1, cache_dir=table_dir)
