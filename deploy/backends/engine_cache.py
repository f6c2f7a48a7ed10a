"""Compiled engines on disk, keyed by everything that makes one engine differ from another."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from spiral.deploy.atomic import write_bytes


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
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

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
