"""Compiled files on disk (TensorRT engines, ONNX Runtime's optimized models), keyed by everything that makes
one differ from another: the ONNX file's content (sha256) and every fact its build depends on."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiralprune.core.atomic import write_bytes
from spiralprune.core.hashing import json_digest


def build_key(facts: dict[str, Any]) -> str:
    """The cache key of a compiled file built from ``facts`` (JSON values, the ONNX file's sha256 among them)."""
    return json_digest(facts, 24)


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
