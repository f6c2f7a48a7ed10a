"""Skip markers for tests that read what a Debian package ships (``make case-deps`` installs them)."""

from __future__ import annotations

import shutil

import pytest

from spiralprune.pipeline.casestudies.images import FASHION_MNIST
from spiralprune.pipeline.casestudies.text import FORTUNES


def _needs(present: bool, package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not present, reason=f"Debian's {package} is not installed (make case-deps installs it)")


needs_fashion_mnist = _needs(FASHION_MNIST.is_dir(), "dataset-fashion-mnist")
needs_fortunes = _needs(FORTUNES.is_dir(), "fortunes")
needs_espeak = _needs(shutil.which("espeak-ng") is not None, "espeak-ng")
