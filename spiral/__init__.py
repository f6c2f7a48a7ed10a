"""spiral's one import name: ``spiral.pipeline``, ``spiral.kernels`` and ``spiral.deploy``.

Installed, they are folders inside this package (pyproject.toml maps the repository's ``pipeline/``,
``kernels/`` and ``deploy/`` there), so spiral owns no top-level name that another distribution
(Hugging Face's ``kernels``, say) may own too. In the source tree (``PYTHONPATH=.``, as the GPU
machine and the tests run it) they are the repository's top-level folders beside this one: there the
repository root joins the package's path, and only there, so an installed spiral never looks beside
its own folder (site-packages, where another ``kernels`` may live).
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not any((_HERE / name).is_dir() for name in ("pipeline", "kernels", "deploy")):
    __path__.append(str(_HERE.parent))

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it

# The Python API (``spiral.pipeline.api``), imported on first use: ``import spiral`` stays light.
__all__ = ["InputError", "Result", "compare", "export", "load", "profile", "shrink", "__version__"]


def __getattr__(name: str):
    if name == "InputError":
        from spiral.deploy.errors import InputError

        return InputError
    if name in __all__:
        from spiral.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'spiral' has no attribute {name!r}")
