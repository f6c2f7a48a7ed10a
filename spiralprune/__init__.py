"""spiral's one import name, ``spiralprune``: ``spiralprune.pipeline``, ``.kernels``, ``.deploy`` and ``.core``.

``spiral`` is other distributions' import name (docs/install.md, "The name").

Installed, they are folders inside this package (pyproject.toml maps the repository's ``pipeline/``,
``kernels/``, ``deploy/`` and ``core/`` there), so spiral owns no top-level name that another distribution
(Hugging Face's ``kernels``, say) may own too. In the source tree (``PYTHONPATH=.``, as the GPU
machine and the tests run it) they are the repository's top-level folders beside this one: there the
repository root joins the package's path, and only there, so an installed spiral never looks beside
its own folder (site-packages, where another ``kernels`` may live).
"""

import importlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not any((_HERE / name).is_dir() for name in ("pipeline", "kernels", "deploy", "core")):
    __path__.append(str(_HERE.parent))

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it

from spiralprune.core.errors import InputError  # noqa: E402  (after the path above; shipped to devices too)

# The Python API, ``spiralprune.pipeline.api``: imported on first use, so ``import spiral`` stays light and the
# device runner (which ships this file, ``spiralprune.core`` and ``spiralprune.deploy``, not ``spiralprune.pipeline``)
# never imports it.
_API = ("Exported", "Result", "compare", "export", "load", "profile", "shrink")
__all__ = ["InputError", *_API, "__version__"]


def __getattr__(name: str) -> object:
    if name in _API:
        return getattr(importlib.import_module("spiralprune.pipeline.api"), name)
    raise AttributeError(f"module 'spiralprune' has no attribute {name!r}")
