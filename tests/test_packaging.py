"""What a user installs: the distribution's metadata and extras, the pinned development environment, and the GPU
image (checked statically: no docker here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import spiralprune

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILE = (ROOT / "Dockerfile.gpu").read_text()


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name for r in requirements}


def test_metadata_is_complete_and_the_version_written_once():
    assert PROJECT["dynamic"] == ["version"] and "version" not in PROJECT
    assert re.fullmatch(r"\d+\.\d+\.\d+", spiralprune.__version__)
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("\n                                 Apache License")
    assert PROJECT["readme"] == "README.md" and PROJECT["authors"] and PROJECT["classifiers"]


def test_dependencies_are_ranges_and_the_environment_is_pinned():
    for requirement in map(Requirement, PROJECT["dependencies"]):
        assert not any(spec.operator == "==" for spec in requirement.specifier), requirement
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name in ("torch", "torchvision", "onnxruntime", "nni"):
        assert pins[name], name
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()


def test_one_onnx_runtime_per_environment():
    """The base needs none; [cpu] brings the CPU build, [gpu] the GPU build, and no extra brings both."""
    extras = PROJECT["optional-dependencies"]
    assert not names(PROJECT["dependencies"]) & {"onnxruntime", "onnxruntime-gpu", "nni", "librosa", "onnxscript"}
    assert "onnxruntime" in names(extras["cpu"]) and "onnxruntime-gpu" in names(extras["gpu"])
    assert {"nvidia-ml-py", "tensorrt"} <= names(extras["gpu"])
    assert names(extras["nni"]) == {"nni"} and names(extras["examples"]) == {"librosa"}
    for extra, requirements in extras.items():
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names(requirements), extra


def dockerfile_lines() -> list[str]:
    """Instructions, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_gpu_image_installs_dependencies_before_the_code_and_runs_as_a_user():
    lines = dockerfile_lines()
    index = {key: next(i for i, line in enumerate(lines) if re.match(key, line)) for key in (
        r"COPY pyproject.toml constraints.txt", r"RUN .*pip install -r .* -c constraints.txt",
        r"COPY spiralprune ", r"RUN python -m pip install --no-deps \.", r"USER ", r"ENTRYPOINT")}
    assert list(index.values()) == sorted(index.values())
    assert not any(re.match(r"COPY (pipeline|kernels|deploy|core|spiralprune)\b", line)
                   for line in lines[:index[r"RUN .*pip install -r .* -c constraints.txt"]])
    user = lines[index[r"USER "]].split()[1]
    assert user not in ("root", "0")


def test_the_gpu_image_has_one_onnx_runtime_and_fails_its_build_without_the_gpu_providers():
    installs = " ".join(line for line in dockerfile_lines() if "pip install" in line)
    assert "onnxruntime" not in installs.replace("onnxruntime-gpu", "")  # only from the [gpu] extra, read above
    assert "optional-dependencies']['gpu']" in DOCKERFILE and "['cpu']" not in DOCKERFILE
    (check,) = [line for line in dockerfile_lines() if "get_available_providers" in line]
    assert check.startswith("RUN python -c") and "import importlib.metadata as md, onnxruntime as ort, tensorrt" in check
    assert "assert ours == {'onnxruntime-gpu'}" in check
    assert "{'CUDAExecutionProvider', 'TensorrtExecutionProvider'} - set(ort.get_available_providers())" in check
    assert "assert not missing" in check
