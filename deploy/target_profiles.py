"""Deployment targets: one YAML file per device under ``deploy/targets/``, validated whole.

A target says how to reach the device (SSH), what builds and runs the model there (``trtexec`` or
ONNX Runtime on the CPU), under which power mode the numbers count, which TensorRT versions the
commands are written for, and the latency budget the result is gated against.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import Budget
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.strict import Strict
from spiralprune.deploy.validation import parse_yaml, validate

TARGET_VERSION = 1
DEFAULT_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
# `make deploy TARGET=jetson` and `spiralprune deploy --target jetson` mean the Orin Nano developer kit.
ALIASES = {"jetson": "jetson-orin-nano"}
# ssh options a target may set. Host, user and port have their own keys; everything else goes in `-o`.
_SSH_FLAGS_WITH_VALUE = ("-F", "-i", "-J", "-o")
_SSH_FLAGS = ("-4", "-6", "-C")
# Options that would turn host key checking off: refused, so a shared target file cannot do it quietly.
_UNSAFE_SSH_OPTIONS = {"stricthostkeychecking": ("no", "off"), "userknownhostsfile": ("/dev/null",)}


class SshSettings(Strict):
    """How to reach the device. ``options`` go to ``ssh`` as given (after ``~`` expansion)."""

    host: str | None = None
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    options: list[str] = []
    connect_timeout_s: int = Field(10, ge=1)

    @field_validator("options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        i = 0
        while i < len(options):
            flag = options[i]
            if flag in _SSH_FLAGS:
                i += 1
                continue
            if flag not in _SSH_FLAGS_WITH_VALUE:
                raise ValueError(
                    f"ssh option '{flag}' is not accepted; use {', '.join(_SSH_FLAGS_WITH_VALUE + _SSH_FLAGS)} "
                    "(host, user and port have their own keys)"
                )
            if i + 1 >= len(options):
                raise ValueError(f"ssh option '{flag}' needs a value")
            if flag == "-o":
                key, _, value = options[i + 1].replace("=", " ", 1).partition(" ")
                if value.strip().lower() in _UNSAFE_SSH_OPTIONS.get(key.strip().lower(), ()):
                    raise ValueError(
                        f"'-o {options[i + 1]}' disables host key checking; add the device's key to "
                        "known_hosts instead (ssh-keyscan, or connect once with ssh)"
                    )
            i += 2
        return options


class RemoteSettings(Strict):
    """Where the bundle goes on the device and which interpreter runs the device runner there."""

    dir: str = ".cache/spiral-deploy"
    python: str = "python3"

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value.strip() or ".." in path.parts or path == PurePosixPath("/"):
            raise ValueError(f"remote dir must be a directory path without '..', got '{value}'")
        return value


class Dla(Strict):
    core: int = Field(ge=0)
    gpu_fallback: bool = True


class TrtexecSettings(Strict):
    path: str = DEFAULT_TRTEXEC
    workspace_mib: int = Field(1024, ge=1)
    dla: Dla | None = None
    # The TensorRT versions (major.minor) the build and profile commands are written for.
    tensorrt: list[str] = ["8.5", "10.3"]

    @field_validator("tensorrt")
    @classmethod
    def _versions(cls, versions: list[str]) -> list[str]:
        if not versions:
            raise ValueError("tensorrt needs at least one supported version")
        for v in versions:
            parts = v.split(".")
            if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts):
                raise ValueError(f"TensorRT version '{v}' must be MAJOR or MAJOR.MINOR, e.g. 10.3")
        return versions


class PowerMode(Strict):
    """The power state the numbers are valid for; a device in another state is refused."""

    nvpmodel_id: int | None = Field(None, ge=0)
    nvpmodel_name: str | None = None
    jetson_clocks: bool | None = None


class DeviceMeasure(Strict):
    """What to measure on the device (batch size, CPU threads) and how (``profile``, the settings of
    ``spiralprune.deploy.sampling`` that every measurement of spiral uses). trtexec times itself: it gets the
    warm-up, ``min_duration_s`` and ``min_rounds x block_calls`` iterations, and its samples are
    summarized in rounds of ``block_calls``."""

    batch: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)
    profile: ProfileSettings = ProfileSettings()


class TargetProfile(Strict):
    version: int = TARGET_VERSION
    name: str
    description: str = ""
    ssh: SshSettings = SshSettings()
    remote: RemoteSettings = RemoteSettings()
    backend: Literal["trtexec", "ort-cpu"]
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    trtexec: TrtexecSettings | None = None
    power: PowerMode | None = None
    measure: DeviceMeasure = DeviceMeasure()
    # What the device's measurement must meet (``spiralprune.deploy.budget.Budget``, the keys of a run's or a
    # gate's budget), judged by spiralprune gate's rules: latency on the device's rounds, size on the shipped file.
    budget: Budget

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != TARGET_VERSION:
            raise ValueError(f"target version {value} is not supported (this spiral reads version {TARGET_VERSION})")
        return value

    @model_validator(mode="after")
    def _device_budget(self) -> TargetProfile:
        self.budget.refuse("budget", {"latency": ("max_ms", "min_throughput"), "size": None},
                           "a device is measured alone, without data: its budget limits latency.max_ms or "
                           "latency.min_throughput and the shipped file's size; gate accuracy and speedups with "
                           "spiralprune gate on the host")
        return self

    @model_validator(mode="after")
    def _backend(self) -> TargetProfile:
        if self.backend == "trtexec" and self.trtexec is None:
            return self.model_copy(update={"trtexec": TrtexecSettings()})
        if self.backend == "ort-cpu":
            if self.trtexec is not None:
                raise ValueError("'trtexec' settings are only for backend: trtexec")
            if self.precision != "fp32":
                raise ValueError("backend ort-cpu runs the ONNX as exported; precision must be fp32")
        if self.trtexec is not None and self.trtexec.dla is not None and self.precision == "fp32":
            raise ValueError("DLA runs fp16 or int8 only; set precision: fp16 or int8, or remove trtexec.dla")
        return self

    @property
    def host(self) -> str:
        if not self.ssh.host:
            raise InputError(f"target '{self.name}' names no host: pass --host HOST (make deploy HOST=...)")
        return self.ssh.host

    def with_host(self, host: str | None) -> TargetProfile:
        if host is None:
            return self
        if not host.strip() or host.startswith("-"):
            raise InputError(f"host '{host}' is not a host name or address")
        return self.model_copy(update={"ssh": self.ssh.model_copy(update={"host": host})})


def parse_target(data: Any, source: str) -> TargetProfile:
    return validate(TargetProfile, data, source)


def _packaged() -> dict[str, Any]:
    folder = resources.files("spiralprune.deploy") / "targets"
    return {entry.name.removesuffix(".yaml"): entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def list_targets() -> list[str]:
    """Names of the targets shipped with spiral."""
    return sorted(_packaged())


def load_target(name_or_path: str | Path, host_override: str | None = None) -> TargetProfile:
    """A shipped target by name (or alias), or a target YAML file by path; ``host_override`` replaces its host."""
    text_name = str(name_or_path)
    packaged = _packaged()
    name = ALIASES.get(text_name, text_name)
    if name in packaged:
        source, text = f"target '{name}'", packaged[name].read_text()
    elif text_name.endswith((".yaml", ".yml")) or "/" in text_name:
        path = Path(text_name)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read target {path}: {exc.strerror}") from None
        source = str(path)
    else:
        close = difflib.get_close_matches(name, [*packaged, *ALIASES], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(f"unknown target '{text_name}'{hint}; known: {', '.join(sorted([*packaged, *ALIASES]))}")
    return parse_target(parse_yaml(text, source), source).with_host(host_override)
