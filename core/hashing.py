"""Content digests: of a file (a model, a bundle's files) and of JSON data (cache keys, fingerprints)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_digest(data: Any, length: int) -> str:
    """The first ``length`` hex digits of the sha256 of ``data`` as JSON with sorted keys: equal data, equal digest,
    whatever order its dicts were built in. The length is part of the key's format (cache file names)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:length]
