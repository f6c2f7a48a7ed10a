"""Running a bundle on a device with the system OpenSSH client.

``ssh`` itself is used (never a Python SSH library) so that ``~/.ssh/config``, keys, agents and
ProxyJump work as they do in a terminal. ``BatchMode=yes`` turns every prompt into a failure, so an
unknown or changed host key is refused, never accepted. The bundle travels as a tar stream over
ssh, into a fresh temporary directory under the target's ``remote.dir`` that is removed at the end,
whether the deploy succeeded or not; engines stay cached in ``remote.dir/engines``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from spiralprune.core.atomic import publish_dir
from spiralprune.core.errors import InputError
from spiralprune.deploy.bundle import Bundle, runner_command
from spiralprune.deploy.device_runner import ERROR_MARK
from spiralprune.deploy.profiler import Profile
from spiralprune.deploy.target_profiles import TargetProfile

# Added after the target's own options, which therefore win (ssh keeps the first value it gets).
_DEFAULT_OPTIONS = ("ServerAliveInterval=15", "ServerAliveCountMax=4")
_UNREACHABLE = ("Connection refused", "Connection timed out", "No route to host", "Network is unreachable",
                "Operation timed out", "Could not resolve hostname", "Name or service not known")
_LOST = ("closed by remote host", "Connection closed", "Connection reset", "Broken pipe", "client_loop")
_NO_SPACE = "No space left on device"


class RemoteError(InputError):
    """A failed ssh call; ``reached`` is False when no command ran on the device (no connection, refused login)."""

    def __init__(self, message: str, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True)
class Ssh:
    host: str
    user: str | None
    port: int | None
    options: tuple[str, ...]
    connect_timeout_s: int

    @classmethod
    def for_target(cls, target: TargetProfile) -> Ssh:
        s = target.ssh
        options = [os.path.expanduser(value) if i and s.options[i - 1] in ("-i", "-F") else value
                   for i, value in enumerate(s.options)]
        return cls(target.host, s.user, s.port, tuple(options), s.connect_timeout_s)

    @property
    def where(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    def argv(self, command: str) -> list[str]:
        args = ["ssh", *self.options, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}"]
        for option in _DEFAULT_OPTIONS:
            args += ["-o", option]
        if self.port:
            args += ["-p", str(self.port)]
        if self.user:
            args += ["-l", self.user]
        # Through sh whatever the login shell is (fish, say), so `&&`, `$?` and quoting mean one thing.
        return [*args, "--", self.host, f"sh -c {shlex.quote(command)}"]

    def run(
        self, command: str, doing: str, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> str:
        """Run ``command`` on the device; its stdout goes to ``stdout``, to ``echo`` line by line, or is returned."""
        with tempfile.TemporaryFile() as err:
            try:
                process = subprocess.Popen(
                    self.argv(command), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                    stdout=stdout if stdout is not None else subprocess.PIPE, stderr=err,
                )
            except FileNotFoundError:
                raise InputError("no ssh client: install OpenSSH (Debian: apt-get install openssh-client)") from None
            lines = []
            if process.stdout is not None:
                for raw in process.stdout:
                    line = raw.decode(errors="replace").rstrip("\n")
                    lines.append(line)
                    if echo is not None:
                        echo(line)
            code = process.wait()
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if code != 0:
            message, reached = self.problem(code, stderr, doing)
            raise RemoteError(message, reached)
        return "\n".join(lines)

    def problem(self, code: int, stderr: str, doing: str) -> tuple[str, bool]:
        """One line saying what went wrong and what to do about it, and whether the device was reached."""
        text = stderr.strip()
        last = text.splitlines()[-1] if text else f"exit status {code}"
        marks = [line for line in text.splitlines() if line.startswith(ERROR_MARK)]
        if marks:
            kind, _, message = marks[-1][len(ERROR_MARK):].strip().partition(": ")
            return _device_problem(kind, message, self.host), True
        if _NO_SPACE in text:
            return f"the disk of {self.host} is full ({_NO_SPACE} while {doing}): free space there or set remote.dir", True
        if code != 255:  # the remote command's own status
            if code == 127 or "not found" in last or "No such file or directory" in last:
                return f"{self.host}: {last} (while {doing}): install it on the device or fix the target", True
            return f"{doing} on {self.host} failed (exit {code}): {last}", True
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key for" in text and "has changed" in text:
            return (f"the host key of {self.host} does not match your known_hosts: if the device was reinstalled, "
                    f"verify its new key and remove the old one with `ssh-keygen -R {self.host}`"), False
        if "Host key verification failed" in text or re.search(r"No \S+ host key is known", text):
            return (f"the host key of {self.host} is not in your known_hosts: connect once with `ssh {self.where}` "
                    "and verify the fingerprint (spiral never accepts unknown keys)"), False
        if "Permission denied" in text:
            return (f"{self.host} refused the login ({last}): install your public key there (ssh-copy-id) "
                    "or name the key with ssh.options [-i, KEY] in the target"), False
        for reason in _UNREACHABLE:
            if reason in text:
                return f"cannot reach {self.where}: {reason} (while {doing})", False
        if not text or any(reason in text for reason in _LOST):
            return f"the connection to {self.host} was lost while {doing}", True
        return f"ssh to {self.where} failed while {doing}: {last}", True


def _device_problem(kind: str, message: str, host: str) -> str:
    if kind == "checksum":
        return f"the bundle on {host} failed checksum verification: {message}"
    if kind == "disk-full":
        return f"the disk of {host} is full ({message}): free space there or set remote.dir"
    if kind == "build-failed":
        return f"the engine build on {host} failed: {message}"
    if kind == "profile-failed":
        return f"profiling on {host} failed: {message}"
    return f"{host}: {message}"


@dataclass(frozen=True)
class DeployResult:
    host: str
    results_dir: Path
    profile_path: Path
    device: dict
    engine_from_cache: bool
    remote_run_dir: str


def _q(path: str) -> str:
    return shlex.quote(path)


def deploy_bundle(
    bundle: Bundle, target: TargetProfile, results_dir: Path, *, echo: Callable[[str], None] = print
) -> DeployResult:
    """Copy, verify, build (or reuse), profile, fetch ``results/`` into ``results_dir``, clean up.

    Any failure is an InputError with one line; the remote temporary directory is removed first
    (and the message says so when it could not be).
    """
    ssh = Ssh.for_target(target)
    run_dir = f"{target.remote.dir.rstrip('/')}/runs/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    copying = True
    try:
        with tempfile.TemporaryFile() as tar_file:
            with tarfile.open(fileobj=tar_file, mode="w") as tar:
                tar.add(bundle.root, arcname=".")
            echo(f"copying the bundle ({tar_file.tell() / 1e6:.1f} MB) to {ssh.where}:{run_dir}")
            tar_file.seek(0)
            ssh.run(f"mkdir -p {_q(run_dir)} && tar -xf - -C {_q(run_dir)}", "copying the bundle", stdin=tar_file)
        copying = False
        command = f"cd {_q(run_dir)} && " + runner_command(target.remote.python, bundle.manifest_sha256, "../../engines")
        ssh.run(command, "running the bundle", echo=echo)
        with tempfile.TemporaryFile() as fetched:
            ssh.run(f"tar -cf - -C {_q(run_dir)} results; status=$?; rm -rf {_q(run_dir)}; exit $status",
                    "fetching the results", stdout=fetched)
            fetched.seek(0)
            _extract_results(fetched, results_dir)
    except BaseException as exc:
        if copying and isinstance(exc, RemoteError) and not exc.reached:
            raise  # nothing was created on the device
        leftover = _remove(ssh, run_dir)
        if isinstance(exc, InputError) and leftover:
            raise InputError(f"{exc}; {leftover}") from None
        raise
    run_info = _device_json(results_dir / "run.json")
    return DeployResult(ssh.host, results_dir, results_dir / "profile.json", _device_json(results_dir / "device.json"),
                        bool(run_info.get("engine_from_cache")), run_dir)


def read_device_profile(path: Path, confidence: float) -> Profile:
    """The device's ``profile.json``, its layer profiles checked field by field and explained here again
    against its measured rounds: the device's own explanation is not what the report shows."""
    profile = Profile.load(path)
    for m in profile.measurements:
        try:
            layers = m.layer_profile()
        except InputError as exc:
            raise InputError(f"the device sent a {path.name} with a {exc}") from None
        if layers is not None:
            m.layers = layers.record(m.rounds(), confidence)
    return profile


def _device_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the device sent no readable {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"the device sent a {path.name} that is not a JSON object")
    return data


def _remove(ssh: Ssh, run_dir: str) -> str | None:
    """Remove the remote temporary directory; None when done, else why it may remain."""
    try:
        ssh.run(f"rm -rf {_q(run_dir)}", "cleaning up")
    except InputError as exc:
        return f"{run_dir} may remain on {ssh.host} (removing it failed too: {exc})"
    return None


def _extract_results(tar_file: IO[bytes], results_dir: Path) -> None:
    """Unpack the fetched ``results/`` beside ``results_dir`` and move it into place.

    Whatever names the device sends, only plain files and folders under ``results/`` are unpacked.
    """
    results_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=results_dir.parent, prefix=f".{results_dir.name}."))
    try:
        try:
            with tarfile.open(fileobj=tar_file, mode="r") as tar:
                tar.extractall(staging, filter=_plain_results)
        except tarfile.TarError as exc:
            raise InputError(f"the device sent results spiral does not unpack: {exc}") from None
        if not (staging / "results" / "profile.json").is_file():
            raise InputError("the device sent results without a profile.json")
        publish_dir(staging / "results", results_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plain_results(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """The data filter (no absolute names, no ``..``) and, beyond it, no links and nothing outside ``results/``."""
    if not (member.isfile() or member.isdir()) or Path(member.name).parts[:1] != ("results",):
        raise tarfile.FilterError(f"{member.name!r} is not a plain file under results/")
    return tarfile.data_filter(member, path)
