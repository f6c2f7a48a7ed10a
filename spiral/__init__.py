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
