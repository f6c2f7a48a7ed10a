"""A real OpenSSH server on 127.0.0.1 for the deploy tests, with throwaway keys.

``/usr/sbin/sshd -D -f <config> -p <free port>`` runs as the current user (as root it needs the
privilege separation directory ``/run/sshd``, which a container without systemd lacks, and
``PermitRootLogin prohibit-password``). The client side is an ``ssh_config`` passed with ``-F``:
a Host alias, the client key and a ``known_hosts`` pinned to the server's host key, so host key
checking stays on exactly as it is for a real device.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from spiralprune.deploy.target_profiles import TargetProfile, parse_target

SSHD = Path("/usr/sbin/sshd")
HOST_ALIAS = "spiral-test-device"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "spiral-test", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshServer:
    root: Path
    port: int
    process: subprocess.Popen
    user: str
    client_key: Path
    known_hosts: Path
    host_key_line: str

    def ssh_config(self, name: str = "ssh_config", *, key: Path | None = None, known_hosts: Path | None = None) -> Path:
        """A client config for the server's Host alias; ``key``/``known_hosts`` replace the good ones."""
        path = self.root / name
        path.write_text(
            f"Host {HOST_ALIAS}\n"
            f"    HostName 127.0.0.1\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {key or self.client_key}\n"
            f"    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts or self.known_hosts}\n"
            f"    GlobalKnownHostsFile /dev/null\n"
            f"    StrictHostKeyChecking yes\n"
            f"    PasswordAuthentication no\n"
        )
        return path

    def session_pids(self) -> list[int]:
        """Every process below the listening sshd: the per-connection children and their commands."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            children = [pid for pid, parent in parents.items() if parent in frontier]
            found += children
            frontier = children
        return found

    def kill_sessions(self) -> int:
        """SIGKILL every connection the server holds (the listener keeps running)."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        self.kill_sessions()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sshd(root: Path) -> SshServer:
    """Start the server; raises RuntimeError with sshd's own words when it cannot run here."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    host_key = _keygen(root / "host_ed25519")
    (root / "authorized_keys").write_text(_keygen(root / "client_ed25519") + "\n")
    port = _free_port()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key.split()[:2])}\n")
    (root / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\n"
        f"HostKey {root / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        # The test's temporary directories are not root-owned 0755 all the way up.
        "StrictModes no\n"
        "UsePAM no\n"
        "MaxStartups 64\n"
        "LogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        # sshd running as root chroots its pre-auth child into this directory; systemd creates it.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [str(SSHD), "-D", "-f", str(root / "sshd_config"), "-p", str(port), "-E", str(root / "sshd.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    server = SshServer(root, port, process, getpass.getuser(), root / "client_ed25519", root / "known_hosts", host_key)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {server.log().strip()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sshd did not listen on port {port} within 10 s: {server.log().strip()[-500:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The server for one test module."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install Debian's openssh-server (`make system-deps` does)")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def loopback_target(server: SshServer, device: Path, *, ssh_config: Path | None = None, **overrides: object) -> TargetProfile:
    """A CPU target on the server whose runner is ONNX Runtime in this venv's python, measuring briefly."""
    return parse_target(loopback_target_data(server, device, ssh_config=ssh_config, **overrides), "loopback")


def loopback_target_data(server: SshServer, device: Path, *, ssh_config: Path | None = None, **overrides: object) -> dict:
    data: dict = {
        "name": "loopback-cpu",
        "backend": "ort-cpu",
        "ssh": {"host": HOST_ALIAS, "options": ["-F", str(ssh_config or server.ssh_config())]},
        "remote": {"dir": str(device), "python": sys.executable},
        "measure": {"threads": 1, "profile": {"warmup_s": 0.02, "block_s": 0.01, "min_rounds": 5,
                                             "min_duration_s": 0.1, "max_duration_s": 0.5}},
        # Far above the tiny model's latency: the judge passes it however busy the machine is.
        "budget": {"latency": {"max_ms": 1000.0}},
    }
    data.update(overrides)
    return data
