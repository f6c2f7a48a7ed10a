"""Compiled files on disk (TensorRT engines, ONNX Runtime's optimized models), keyed by everything that makes
one differ from another: the ONNX file's content (sha256) and every fact its build depends on.

Every file (or folder) of one model's build is named by its key (``KEY.onnx`` and ``KEY.json``, ``KEY.engine``,
ONNX Runtime's TensorRT folder ``KEY/``), and a backend's runner reports the key it ran from
(``settings["engine_key"]``); files shared by every build on a machine (TensorRT's timing caches) are not named
by a key. So ``evict`` removes one model's files exactly, knowing only the keys to keep.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiralprune.core.atomic import write_bytes
from spiralprune.core.hashing import json_digest


KEY_LENGTH = 24
# A file named by a key: KEY, KEY.suffix, or a temporary file a killed build left (.KEY.suffix.XXXX.tmp)
KEYED = re.compile(rf"\.?([0-9a-f]{{{KEY_LENGTH}}})(?:\.|$)")


def build_key(facts: dict[str, Any]) -> str:
    """The cache key of a compiled file built from ``facts`` (JSON values, the ONNX file's sha256 among them)."""
    return json_digest(facts, KEY_LENGTH)


@dataclass(frozen=True)
class Evicted:
    """What ``evict`` removed: files (those inside a removed folder counted) and their bytes."""

    files: int = 0
    bytes: int = 0

    def record(self) -> dict[str, int | float]:
        """As a run records it beside its compile counts: files, and MB."""
        return {"evicted": self.files, "evicted_mb": round(self.bytes / 1e6, 1)}


def evict(cache_dir: Path, keep: Collection[str]) -> Evicted:
    """Remove from ``cache_dir`` every file and folder named by a key not in ``keep`` (a model's compiled file,
    its facts, a temporary file a killed build left); what no key names (TensorRT's timing caches) stays. Only
    when nothing builds into or runs from ``cache_dir``: a file removed under a loaded model is gone for good."""
    files = size = 0
    if not Path(cache_dir).is_dir():
        return Evicted()
    for entry in sorted(Path(cache_dir).iterdir()):
        named = KEYED.match(entry.name)
        if named is None or named.group(1) in keep:
            continue
        inside = [p for p in entry.rglob("*") if p.is_file()] if entry.is_dir() else [entry]
        files += len(inside)
        size += sum(p.stat().st_size for p in inside)
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return Evicted(files, size)


@dataclass(frozen=True)
class EngineSpec:
    """What an engine was built from and for. Equal specs may share one engine file."""

    onnx_sha256: str
    trt_version: str
    gpu: str
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    workspace_bytes: int
    batch_sizes: tuple[int, ...]

    def key(self) -> str:
        return build_key(dataclasses.asdict(self))

    def engine_path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / f"{self.key()}.engine"

    def timing_cache_path(self, cache_dir: Path) -> Path:
        """One timing cache per TensorRT version and GPU, shared by every model built there."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.trt_version}-{self.gpu}").strip("-")
        return Path(cache_dir) / f"timing-{slug}.cache"

    def save(self, cache_dir: Path, engine: bytes) -> Path:
        path = self.engine_path(cache_dir)
        write_bytes(path.with_suffix(".json"), json.dumps(dataclasses.asdict(self), indent=2).encode())
        write_bytes(path, engine)
        return path
