"""A data folder is built once per key, replaced when the key changes, and never left half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.cache import BUILDERS_VERSION, cached_build, read_manifest, require_source


def test_built_once_per_key_and_rebuilt_for_another(tmp_path: Path) -> None:
    calls = []

    def build(work: Path) -> dict:
        calls.append(work)
        (work / "data.txt").write_text(str(len(calls)))
        return {"items": len(calls)}

    out = tmp_path / "data"
    assert cached_build(out, {"n": 1}, build) == out
    assert cached_build(out, {"n": 1}, build) == out
    assert len(calls) == 1 and (out / "data.txt").read_text() == "1"
    assert read_manifest(out) == {"key": {"n": 1, "builders_version": BUILDERS_VERSION}, "items": 1}
    cached_build(out, {"n": 2}, build)
    assert len(calls) == 2 and read_manifest(out)["key"]["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_build_leaves_the_previous_folder_and_no_temporary_one(tmp_path: Path) -> None:
    def good(work: Path) -> dict:
        (work / "ok").write_text("1")
        return {}

    out = tmp_path / "data"
    cached_build(out, {"n": 1}, good)

    def broken(work: Path) -> dict:
        (work / "partial").write_text("x")
        raise InputError("source vanished")

    with pytest.raises(InputError, match="source vanished"):
        cached_build(out, {"n": 2}, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (out / "ok").is_file() and read_manifest(out)["key"]["n"] == 1


def test_missing_source_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found: install Debian's some-package \(make case-deps\)"):
        require_source(tmp_path / "absent", "some-package")
    assert require_source(tmp_path, "some-package") == tmp_path
