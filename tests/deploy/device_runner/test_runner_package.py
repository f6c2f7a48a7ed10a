"""What the shipped runner package may rely on, on a Jetson with JetPack 5 (Python 3.8): the standard
library, numpy, onnxruntime and the modules shipped with it; and every module of it is shipped."""

from __future__ import annotations

import ast
import sys
from pathlib import Path, PurePosixPath

import pytest

from spiralprune import core
from spiralprune.deploy import device_runner
from spiralprune.deploy.bundle import RUNNER, RUNNER_DIR, RUNNER_FILES


def _shipped_modules() -> dict[str, str]:
    """Module name on the device (``runner/`` on its path) -> the shipped file's name in the bundle."""
    modules = {}
    for name in RUNNER_FILES:
        parts = PurePosixPath(name).relative_to(RUNNER_DIR).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = name
    return modules


def test_every_module_of_the_runner_package_is_shipped() -> None:
    package = Path(device_runner.__file__).parent
    modules = _shipped_modules()
    assert {f"{RUNNER}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"} | {RUNNER} == {
        m for m in modules if m.startswith(RUNNER)}
    assert f"{RUNNER}.__main__" in modules  # python3 -m spiralprune.deploy.device_runner


def test_the_floor_below_deploy_is_shipped_whole() -> None:
    """Every module of ``spiralprune.core``, whatever the runner imports of it today."""
    floor = Path(core.__file__).parent
    assert {f"spiralprune.core.{p.stem}" for p in floor.glob("*.py") if p.stem != "__init__"} | {"spiralprune.core"} == {
        m for m in _shipped_modules() if m.startswith("spiralprune.core")}


def test_shipped_runner_imports_only_the_standard_library_numpy_onnxruntime_onnx_and_its_modules() -> None:
    """onnx only where ONNX Runtime's layers are named, and a device without it profiles no layers."""
    modules = _shipped_modules()
    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "onnx", "__future__"}
    for module, name in modules.items():
        package = module if name.endswith("/__init__.py") else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(RUNNER_FILES[name].read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against the package, as Python does
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for imported in names:
                assert imported in modules or imported.split(".")[0] in allowed, f"{name} imports {imported}"


@pytest.mark.parametrize("name", sorted(RUNNER_FILES))
def test_shipped_files_are_python_38(name: str) -> None:
    source = RUNNER_FILES[name].read_text()
    ast.parse(source, feature_version=(3, 8))
    for newer in (".removeprefix(", ".removesuffix(", "functools.cache(", "zip(strict"):
        assert newer not in source, f"{name} uses {newer!r}, which Python 3.8 lacks"
    # ``from __future__ import annotations`` defers annotations, not module-level aliases: on 3.8
    # ``Callable[[], float]`` from collections.abc (or ``list[int]``) fails when the module is imported.
    tree = ast.parse(source)
    abc_names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "collections.abc" for a in node.names}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name):
                    generic = sub.value.id
                    assert generic not in abc_names | {"list", "dict", "tuple", "set", "frozenset", "type"}, (
                        f"{name} subscripts {generic} at import time, which Python 3.8 cannot")
