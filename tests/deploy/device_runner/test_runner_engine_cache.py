"""``deploy/device_runner/engine_cache.py``: a cache entry is reused as it is, and is complete or absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spiralprune.deploy.device_runner.engine_cache import ENGINE_FILE, build_engine, cache_entry
from spiralprune.deploy.device_runner.errors import DeviceError

# A real build command: writes the engine file named by {engine}, or not.
WRITES_ENGINE = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('engine'); print('built')", "{engine}"]
WRITES_NOTHING = [sys.executable, "-c", "print('built nothing')"]


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    bundle, results, cache = tmp_path / "bundle", tmp_path / "results", tmp_path / "cache"
    for folder in (bundle, results, cache):
        folder.mkdir()
    return bundle, results, cache


def test_a_build_is_cached_then_reused(tmp_path: Path) -> None:
    bundle, results, cache = _dirs(tmp_path)
    entry = cache_entry(cache, "key", "ort1.20.0")
    assert entry == cache / "key-ort1.20.0"
    assert build_engine({}, bundle, entry, {"build": WRITES_ENGINE}, {}, results) is False
    assert (entry / ENGINE_FILE).read_text() == "engine" and not (bundle / "build").exists()
    assert "built" in (results / "build.log").read_text()
    (results / "build.log").unlink()
    assert build_engine({}, bundle, entry, {"build": WRITES_NOTHING}, {}, results) is True  # nothing is run
    assert "built" in (results / "build.log").read_text()


def test_a_build_without_an_engine_caches_nothing(tmp_path: Path) -> None:
    bundle, results, cache = _dirs(tmp_path)
    entry = cache_entry(cache, "key", "ort1.20.0")
    with pytest.raises(DeviceError, match="succeeded but wrote no engine") as info:
        build_engine({}, bundle, entry, {"build": WRITES_NOTHING}, {}, results)
    assert info.value.kind == "build-failed" and not entry.exists()
