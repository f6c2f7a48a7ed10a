"""Installed, spiral owns one top-level import name, ``spiral``: the repository's ``pipeline/``, ``kernels/``,
``deploy/`` and ``core/`` install as ``spiralprune.pipeline``, ``spiralprune.kernels``, ``spiralprune.deploy`` and
``spiralprune.core``, so that spiral installs beside other distributions that own ``pipeline``, ``kernels`` (Hugging
Face's), ``deploy`` or ``core`` without breaking them or being broken by them.

The wheel is built here from a copy of the source with this environment's setuptools and installed,
offline, into a fresh environment (without torch: only modules that need the standard library alone
are imported there) beside a distribution that owns the four bare names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "spiralprune"
LAYERS = ("pipeline", "kernels", "deploy", "core")
# Top-level names other distributions install: the layers' (Hugging Face's ``kernels``, say) and ``spiral``
# (spiral-sdk's and pyspiral's import name; the distribution ``spiral`` on PyPI is a third project).
OTHERS = (*LAYERS, "spiral")
# The folders of data files the packages read through importlib.resources, and what they hold.
DATA = {"deploy/targets": "*.yaml", "pipeline/configs": "*.yaml"}


def _installed_name(folder: Path) -> str:
    """``ROOT/deploy/backends`` -> ``spiralprune.deploy.backends``."""
    return ".".join((NAME, *folder.relative_to(ROOT).parts))


def _packages() -> set[str]:
    """Every package of the source tree and every data folder, by the name it installs under."""
    packages = {_installed_name(init.parent) for layer in LAYERS for init in (ROOT / layer).rglob("__init__.py")}
    return {NAME, *packages, *(_installed_name(ROOT / folder) for folder in DATA)}


def test_pyproject_maps_every_package_under_spiral() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {NAME: NAME, **{f"{NAME}.{layer}": layer for layer in LAYERS}}
    assert sorted(setuptools["packages"]) == sorted(_packages())
    assert setuptools["package-data"] == {_installed_name(ROOT / folder): [files] for folder, files in DATA.items()}


def _pip(*args: str | Path) -> None:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", *map(str, args)], env=env, check=True, capture_output=True, text=True)


def _other_distribution(folder: Path) -> Path:
    """A distribution of someone else's that owns the top-level packages ``pipeline``, ``kernels``, ``deploy``,
    ``core`` and ``spiral``."""
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "others"\nversion = "1.0"\n\n'
        f"[tool.setuptools]\npackages = {json.dumps(list(OTHERS))}\n"
    )
    for layer in OTHERS:
        (folder / layer).mkdir()
        (folder / layer / "__init__.py").write_text('OWNER = "other"\n')
    return folder


@pytest.mark.slow
def test_the_wheel_installs_beside_other_pipeline_kernels_deploy_core_and_spiral(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", minversion="70.1", reason="the wheel is built offline with setuptools>=70.1")
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", source)
    for folder in (NAME, *LAYERS):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", "--wheel-dir", wheels,
         source, _other_distribution(tmp_path / "others"))
    (wheel,) = wheels.glob(f"{NAME}-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {NAME, wheel.name.split("-py")[0] + ".dist-info"}
    # Every module and data file of the source, under spiralprune/.
    files = [p for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts]
    files += [p for folder, pattern in DATA.items() for p in (ROOT / folder).glob(pattern)]
    assert {f"{NAME}/{p.relative_to(ROOT).as_posix()}" for p in files} <= set(names)
    assert f"{NAME}/__init__.py" in names

    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    _pip("--python", python, "install", "--no-deps", "--no-index", "--no-cache-dir", *sorted(wheels.glob("*.whl")))
    check = f"""
import importlib.metadata, importlib.resources, json, sys
import core, deploy, kernels, pipeline, spiral
import spiralprune, spiralprune.core.errors, spiralprune.deploy.fingerprint, spiralprune.deploy.trtexec_parse
from spiralprune.deploy.device_runner.steps import RUNNER_ROOT
(script,) = importlib.metadata.entry_points(group="console_scripts", name="{NAME}")
print(json.dumps({{
    "owners": [core.OWNER, deploy.OWNER, kernels.OWNER, pipeline.OWNER, spiral.OWNER],
    "spiral_path": list(spiralprune.__path__),
    "errors": spiralprune.core.errors.__file__,
    "runner_root": str(RUNNER_ROOT),
    "targets": sorted(e.name for e in (importlib.resources.files("spiralprune.deploy") / "targets").iterdir()),
    "script": script.value,
    "site": [p for p in sys.path if p.endswith("site-packages")],
}}))
"""
    done = subprocess.run([python, "-I", "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    (site,) = [Path(p).resolve() for p in found["site"]]
    assert found["owners"] == ["other"] * 5  # theirs, untouched by spiralprune
    assert [Path(p).resolve() for p in found["spiral_path"]] == [site / NAME]  # nothing beside it joins the package
    assert Path(found["errors"]).resolve() == site / NAME / "core" / "errors.py"
    assert Path(found["runner_root"]) == site
    assert found["targets"] == sorted(p.name for p in (ROOT / "deploy" / "targets").glob("*.yaml"))
    assert found["script"] == "spiralprune.pipeline.cli:main"
    runner = subprocess.run([python, "-I", "-m", "spiralprune.deploy.device_runner", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert runner.returncode == 0 and "python3 -m spiralprune.deploy.device_runner" in runner.stdout, runner.stderr
