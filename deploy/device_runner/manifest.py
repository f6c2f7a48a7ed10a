"""Checksums: the bundle on the device is used only once its manifest and every file it lists match."""

from __future__ import annotations

import json
from pathlib import Path

from spiralprune.core.hashing import sha256_file

from .errors import DeviceError, say

MANIFEST = "manifest.json"


def verify_bundle(bundle: Path, manifest_sha256: str) -> dict:
    """The manifest, once it and every file it lists match their sha256."""
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file() or sha256_file(manifest_path) != manifest_sha256:
        raise DeviceError("checksum", f"{MANIFEST} is missing or differs from the one sent: the copy is incomplete")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in sorted(manifest["files"].items()):
        path = bundle / name
        if bundle.resolve() not in [path.resolve(), *path.resolve().parents]:  # Python 3.8: no is_relative_to
            raise DeviceError("checksum", f"{name!r} points outside the bundle")
        if not path.is_file():
            raise DeviceError("checksum", f"{name} is missing: the copy is incomplete")
        if sha256_file(path) != expected:
            raise DeviceError("checksum", f"{name} does not match its sha256: the copy was cut off or altered")
    say(f"verified the sha256 of {len(manifest['files'])} files")
    return manifest
